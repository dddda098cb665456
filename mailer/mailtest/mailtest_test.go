package mailtest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/seatd/seatd/mailer/mailtest"
)

const testMessage = "From: a@example.test\r\nTo: b@example.test\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n" +
	"Message-ID: <m1@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n\r\nHello =E2=9C=93\r\n"

// send runs one transaction; c may be nil to dial a fresh client. It is
// safe to call from any goroutine.
func send(s *mailtest.Server, c *smtp.Client) (err error) {
	if c == nil {
		if c, err = smtp.Dial(s.Addr()); err != nil {
			return err
		}
		defer func() {
			if cerr := c.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	if err := c.Mail("a@example.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(testMessage)); err != nil {
		return err
	}
	return w.Close()
}

// dial opens a client connection that the test closes at its end.
func dial(t *testing.T, s *mailtest.Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestRecordsAcceptedMessages(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{})
	if err := send(s, nil); err != nil {
		t.Fatal(err)
	}
	m := s.WaitForMessages(t, 1, time.Second)[0]
	if m.From != "a@example.test" || len(m.To) != 1 || m.To[0] != "b@example.test" || m.TLS || m.AuthUser != "" {
		t.Errorf("envelope: %+v", m)
	}
	if m.Subject() != "Café" || m.MessageID() != "<m1@example.test>" {
		t.Errorf("headers: subject %q, id %q", m.Subject(), m.MessageID())
	}
	if text, err := m.Text(); err != nil || text != "Hello ✓\r\n" {
		t.Errorf("Text() = %q, %v", text, err)
	}
	if _, err := m.HTML(); err == nil {
		t.Error("HTML() of a text-only message succeeded")
	}
	if !strings.HasPrefix(s.URL(), "smtp://127.0.0.1:") {
		t.Errorf("URL() = %q", s.URL())
	}
}

func TestScriptedReplies(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{})
	s.RejectFirst(2, 451, "try later")
	for i, want := range []int{451, 451, 0} {
		if got := smtpCode(send(s, nil)); got != want {
			t.Errorf("transaction %d: code %d, want %d", i+1, got, want)
		}
	}
	s.RejectAll(550, "no")
	for range 3 {
		if got := smtpCode(send(s, nil)); got != 550 {
			t.Errorf("code %d, want 550", got)
		}
	}
	s.AcceptAll()
	if err := send(s, nil); err != nil {
		t.Fatal(err)
	}
	if n, m := s.Transactions(), len(s.Messages()); n != 7 || m != 2 {
		t.Errorf("%d transactions, %d accepted; want 7, 2", n, m)
	}
}

// RejectTo scripts one recipient's transactions, before the server-wide
// script, and leaves the connection open for the next transaction.
func TestScriptedRepliesToOneRecipient(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{})
	s.RejectAll(451, "everyone else waits")
	s.RejectTo("B@example.test", 2, 550, "no such user")
	c := dial(t, s)
	// send's recipient is b@example.test.
	for i, want := range []int{550, 550, 451} {
		if got := smtpCode(send(s, c)); got != want {
			t.Errorf("transaction %d: code %d, want %d", i+1, got, want)
		}
	}
	s.AcceptAll()
	if err := send(s, c); err != nil {
		t.Fatal(err)
	}
	if n, m, conns := s.Transactions(), len(s.Messages()), s.Connections(); n != 4 || m != 1 || conns != 1 {
		t.Errorf("%d transactions, %d accepted over %d connections; want 4, 1 over 1", n, m, conns)
	}
}

func TestAuthRequired(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{Username: "u", Password: "p"})
	if got := smtpCode(send(s, nil)); got != 530 {
		t.Errorf("without AUTH: code %d, want 530", got)
	}
	c := dial(t, s)
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); smtpCode(err) != 535 {
		t.Errorf("wrong password: %v, want 535", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatal(err)
	}
	if err := send(s, c); err != nil {
		t.Fatal(err)
	}
	if m := s.WaitForMessages(t, 1, time.Second)[0]; m.AuthUser != "u" {
		t.Errorf("AuthUser = %q", m.AuthUser)
	}
}

// A transaction held before acceptance whose client disconnects is
// dropped; one that is released is accepted.
func TestHoldBeforeAccept(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{})
	s.Hold(mailtest.HoldBeforeAccept)
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cut := make(chan error, 1)
	go func() { cut <- send(s, c) }()
	s.WaitForHeld(t, 1, 5*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-cut; err == nil {
		t.Error("send on a connection cut while held succeeded")
	}
	s.WaitForHeld(t, 0, 5*time.Second)
	if n, m := s.Transactions(), len(s.Messages()); n != 0 || m != 0 {
		t.Fatalf("abandoned transaction counted: %d transactions, %d messages", n, m)
	}

	done := make(chan error, 1)
	go func() { done <- send(s, nil) }()
	s.WaitForHeld(t, 1, 5*time.Second)
	if len(s.Messages()) != 0 {
		t.Fatal("accepted while held")
	}
	s.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.WaitForMessages(t, 1, time.Second)
	// Release stops holding: the next one goes straight through.
	if err := send(s, nil); err != nil {
		t.Fatal(err)
	}
}

// HoldAfterAccept records the message before the client hears of it.
func TestHoldAfterAccept(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{})
	s.Hold(mailtest.HoldAfterAccept)
	done := make(chan error, 1)
	go func() { done <- send(s, nil) }()
	s.WaitForHeld(t, 1, 5*time.Second)
	if len(s.Messages()) != 1 {
		t.Fatal("the held message is not recorded")
	}
	select {
	case err := <-done:
		t.Fatalf("the client got its reply while held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	starttls := mailtest.Start(t, mailtest.Config{STARTTLS: true})
	c, err := smtp.DialStartTLS(starttls.Addr(), starttls.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := send(starttls, c); err != nil {
		t.Fatal(err)
	}
	if !starttls.WaitForMessages(t, 1, time.Second)[0].TLS {
		t.Error("STARTTLS session not recorded as TLS")
	}

	implicit := mailtest.Start(t, mailtest.Config{ImplicitTLS: true})
	if !strings.HasPrefix(implicit.URL(), "smtps://") {
		t.Errorf("URL() = %q", implicit.URL())
	}
	c2, err := smtp.DialTLS(implicit.Addr(), implicit.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c2.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := send(implicit, c2); err != nil {
		t.Fatal(err)
	}
	if !implicit.WaitForMessages(t, 1, time.Second)[0].TLS {
		t.Error("SMTPS session not recorded as TLS")
	}
}

// MaxConnections refuses the connections past the limit, not the ones
// before it; MessagesPerConnection drops a connection at the MAIL FROM
// after its quota.
func TestConnectionLimits(t *testing.T) {
	s := mailtest.Start(t, mailtest.Config{MaxConnections: 1, MessagesPerConnection: 2})
	first := dial(t, s)
	if err := first.Hello("client.test"); err != nil {
		t.Fatalf("the first connection: %v", err)
	}
	second := dial(t, s)
	if err := second.Hello("client.test"); smtpCode(err) != 421 {
		t.Errorf("a second connection at once: %v, want 421", err)
	}
	for i := range 2 {
		if err := send(s, first); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	if err := send(s, first); err == nil {
		t.Error("a third message on a connection limited to two went through")
	}
	if n, conns := len(s.Messages()), s.Connections(); n != 2 || conns != 2 {
		t.Errorf("%d messages over %d connections, want 2 over 2", n, conns)
	}
}
