package mailer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seatd/seatd/mailer/mailtest"
)

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want SMTPConfig // Port 0 here means the default is filled in later
	}{
		{"smtp://mail.example.com", SMTPConfig{Host: "mail.example.com", TLS: TLSOpportunistic}},
		{"smtp://u%40x:p%3Ass@mail.example.com:2525", SMTPConfig{Host: "mail.example.com", Port: 2525, Username: "u@x", Password: "p:ss", TLS: TLSOpportunistic}},
		{"smtp://mail.example.com?tls=starttls", SMTPConfig{Host: "mail.example.com", TLS: TLSStartTLS}},
		{"smtp://mail.example.com?tls=none&timeout=5s", SMTPConfig{Host: "mail.example.com", TLS: TLSNone, Timeout: 5 * time.Second}},
		{"smtps://u:p@[::1]", SMTPConfig{Host: "::1", Username: "u", Password: "p", TLS: TLSImplicit}},
	} {
		got, err := ParseSMTPURL(tc.url)
		if err != nil {
			t.Errorf("ParseSMTPURL(%q): %v", tc.url, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseSMTPURL(%q) = %+v, want %+v", tc.url, got, tc.want)
		}
	}
	for _, bad := range []string{
		"http://mail.example.com",
		"smtp://",
		"smtp://user:hunter2@mail.example.com:99999",
		"smtp://user:hunter2@mail.example.com?tls=maybe",
		"smtps://user:hunter2@mail.example.com?tls=none",
		"smtp://user:hunter2@mail.example.com?timeout=soon",
		"smtp://user:hunter2@mail.example.com?tsl=none",
		"smtp://user:hunter2%zz@mail.example.com",
	} {
		_, err := ParseSMTPURL(bad)
		if err == nil {
			t.Errorf("ParseSMTPURL(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseSMTPURL(%q) error shows the password: %v", bad, err)
		}
	}
}

func TestSMTPDefaultPorts(t *testing.T) {
	for mode, want := range map[TLSMode]int{TLSOpportunistic: 587, TLSStartTLS: 587, TLSNone: 25, TLSImplicit: 465} {
		s, err := NewSMTPSender(SMTPConfig{Host: "mail.example.com", TLS: mode})
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.Port != want {
			t.Errorf("%s: port %d, want %d", mode, s.cfg.Port, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"smtp://user:hunter2@mail.example.com:587?tls=none": "smtp://user:xxxxx@mail.example.com:587?tls=none",
		"smtps://mail.example.com":                          "smtps://mail.example.com",
		"smtp://user:hun%zzter2@mail.example.com/x":         "smtp://xxxxx@mail.example.com/x",
		"postgres://app:pw@db:5432/seatd":                   "postgres://app:xxxxx@db:5432/seatd",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	s, err := NewSMTPSender(SMTPConfig{Host: "mail.example.com", Username: "u", Password: "hunter2", TLS: TLSStartTLS})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "smtp://u:xxxxx@mail.example.com:587?tls=starttls"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// testMessage is a small valid message.
func testMessage(t *testing.T) *Message {
	t.Helper()
	m, err := Composer{PublicURL: testPublicURL}.Compose(Invitation{
		ID: "5e0d6f1a-0000-4000-8000-000000000001", To: "invitee@example.test", ProductName: "Acme Pro",
		Organization: "Acme", Token: "tok", ExpiresAt: time.Now().Add(time.Hour),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func smtpSender(t *testing.T, srv *mailtest.Server, rawURL string) *SMTPSender {
	t.Helper()
	cfg, err := ParseSMTPURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig = srv.ClientTLSConfig()
	cfg.Timeout = 5 * time.Second
	s, err := NewSMTPSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSMTPSenderTLSModes(t *testing.T) {
	t.Parallel()
	plain := mailtest.Start(t, mailtest.Config{})
	starttls := mailtest.Start(t, mailtest.Config{STARTTLS: true})
	implicit := mailtest.Start(t, mailtest.Config{ImplicitTLS: true})
	for _, tc := range []struct {
		name    string
		srv     *mailtest.Server
		query   string
		wantTLS bool
		wantErr bool
	}{
		{"opportunistic, server without TLS: clear", plain, "", false, false},
		{"opportunistic, server with STARTTLS: encrypted", starttls, "", true, false},
		{"none, server with STARTTLS: clear", starttls, "?tls=none", false, false},
		{"starttls, server with STARTTLS: encrypted", starttls, "?tls=starttls", true, false},
		{"starttls, server without TLS: refused", plain, "?tls=starttls", false, true},
		{"smtps: encrypted from the start", implicit, "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.srv.Messages())
			err := smtpSender(t, tc.srv, tc.srv.URL()+tc.query).Send(t.Context(), testMessage(t))
			if tc.wantErr {
				if err == nil {
					t.Fatal("sent without the required TLS")
				}
				if IsPermanent(err) {
					t.Errorf("a TLS configuration problem is permanent: %v", err)
				}
				if n := len(tc.srv.Messages()); n != before {
					t.Errorf("the server accepted a message")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs := tc.srv.WaitForMessages(t, before+1, 5*time.Second)
			if got := msgs[len(msgs)-1].TLS; got != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", got, tc.wantTLS)
			}
		})
	}
}

func TestSMTPSenderAuth(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{Username: "seatd", Password: "hunter2", STARTTLS: true})
	send := func(t *testing.T, rawURL string) error {
		return smtpSender(t, srv, rawURL).Send(t.Context(), testMessage(t))
	}
	hostPort := srv.Addr()

	t.Run("credentials over STARTTLS", func(t *testing.T) {
		if err := send(t, "smtp://seatd:hunter2@"+hostPort); err != nil {
			t.Fatal(err)
		}
		m := srv.WaitForMessages(t, 1, 5*time.Second)[0]
		if m.AuthUser != "seatd" || !m.TLS {
			t.Errorf("AuthUser %q, TLS %v; want seatd over TLS", m.AuthUser, m.TLS)
		}
	})
	t.Run("credentials in clear to localhost", func(t *testing.T) {
		if err := send(t, "smtp://seatd:hunter2@"+hostPort+"?tls=none"); err != nil {
			t.Fatal(err)
		}
		if m := srv.WaitForMessages(t, 2, 5*time.Second)[1]; m.AuthUser != "seatd" || m.TLS {
			t.Errorf("AuthUser %q, TLS %v; want seatd in clear", m.AuthUser, m.TLS)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		err := send(t, "smtp://seatd:wrong-pw@"+hostPort)
		if err == nil {
			t.Fatal("sent with a wrong password")
		}
		if IsPermanent(err) {
			t.Errorf("an authentication failure is a configuration problem, not permanent: %v", err)
		}
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("error shows the password: %v", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		err := send(t, "smtp://"+hostPort)
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "530") {
			t.Errorf("without credentials: %v, want a temporary 530", err)
		}
	})
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("%d messages accepted, want 2", n)
	}
}

// messagesTo composes one invitation email to each recipient.
func messagesTo(t *testing.T, rcpts ...string) []*Message {
	t.Helper()
	msgs := make([]*Message, len(rcpts))
	for i, rcpt := range rcpts {
		m, err := Composer{PublicURL: testPublicURL}.Compose(Invitation{
			ID: fmt.Sprintf("5e0d6f1a-0000-4000-8000-%012d", i), To: rcpt, ProductName: "Acme Pro",
			Organization: "Acme", Token: "tok", ExpiresAt: time.Now().Add(time.Hour),
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	return msgs
}

// sendAll runs SendAll and returns each message's outcome, failing the
// test unless every message is reported exactly once.
func sendAll(t *testing.T, s Sender, msgs []*Message) []error {
	t.Helper()
	var mu sync.Mutex
	errs, reported := make([]error, len(msgs)), make([]int, len(msgs))
	s.SendAll(t.Context(), msgs, func(out []Outcome) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range out {
			errs[o.Index] = o.Err
			reported[o.Index]++
		}
	})
	for i, n := range reported {
		if n != 1 {
			t.Errorf("message %d reported %d times", i, n)
		}
	}
	return errs
}

// SendAll carries many messages over few connections, each with its own
// outcome: the server's refusal of one neither closes its connection nor
// touches the others; a 421 closes it, and the next message goes on a new
// one.
func TestSMTPSenderSendAllReusesConnections(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{STARTTLS: true, Username: "seatd", Password: "hunter2"})
	s := smtpSender(t, srv, "smtp://seatd:hunter2@"+srv.Addr())
	s.cfg.Connections = 2
	rcpts := make([]string, 10)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("user%d@example.test", i)
	}
	srv.RejectTo(rcpts[3], 1, 550, "No such user")
	srv.RejectTo(rcpts[6], 1, 451, "Greylisted")
	errs := sendAll(t, s, messagesTo(t, rcpts...))
	for i, err := range errs {
		switch i {
		case 3:
			if !IsPermanent(err) || !strings.Contains(err.Error(), "550") {
				t.Errorf("message 3: %v, want a permanent 550", err)
			}
		case 6:
			if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "451") {
				t.Errorf("message 6: %v, want a temporary 451", err)
			}
		default:
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
	}
	msgs := srv.Messages()
	if len(msgs) != 8 {
		t.Fatalf("%d messages accepted, want 8", len(msgs))
	}
	for _, m := range msgs {
		if !m.TLS || m.AuthUser != "seatd" {
			t.Errorf("message to %v: TLS %v, AuthUser %q", m.To, m.TLS, m.AuthUser)
		}
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("%d connections for 10 messages, want 2", n)
	}

	s.cfg.Connections = 1
	srv.RejectTo(rcpts[0], 1, 421, "Closing, too busy")
	errs = sendAll(t, s, messagesTo(t, rcpts[:4]...))
	if err := errs[0]; err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "421") {
		t.Errorf("message 0: %v, want a temporary 421", err)
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("message %d after the 421: %v", i+1, err)
		}
	}
	if n := srv.Connections(); n != 2+2 {
		t.Errorf("%d connections, want 4: the 421 closed one", n)
	}
}

// A server that lets go of a connection between two messages (a limit per
// connection, an idle timeout) costs a new connection, not a failure:
// nothing of the next message had been sent.
func TestSMTPSenderSendAllReconnects(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{MessagesPerConnection: 3})
	s := smtpSender(t, srv, srv.URL())
	s.cfg.Connections = 1
	for i, err := range sendAll(t, s, messagesTo(t, "a@example.test", "b@example.test", "c@example.test",
		"d@example.test", "e@example.test", "f@example.test", "g@example.test")) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n, tx, conns := len(srv.Messages()), srv.Transactions(), srv.Connections(); n != 7 || tx != 7 || conns != 3 {
		t.Errorf("%d messages in %d transactions over %d connections, want 7 in 7 over 3", n, tx, conns)
	}
}

// A server that refuses a client's extra connections costs those
// connections, not messages: the others carry the batch.
func TestSMTPSenderSendAllWithConnectionLimit(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{MaxConnections: 2})
	s := smtpSender(t, srv, srv.URL())
	s.cfg.Connections = 4
	rcpts := make([]string, 12)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("user%d@example.test", i)
	}
	for i, err := range sendAll(t, s, messagesTo(t, rcpts...)) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n := len(srv.Messages()); n != len(rcpts) {
		t.Errorf("%d messages accepted, want %d", n, len(rcpts))
	}
	if n := srv.Connections(); n != 4 {
		t.Errorf("%d connections, want 4: two refused", n)
	}
}

// When no connection can be set up, every message of the batch fails at
// once with the reason, temporarily, after one attempt per connection
// rather than one per message.
func TestSMTPSenderSendAllCannotConnect(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{Username: "seatd", Password: "hunter2"})
	s := smtpSender(t, srv, "smtp://seatd:wrong-pw@"+srv.Addr()+"?tls=none")
	s.cfg.Connections = 2
	for i, err := range sendAll(t, s, messagesTo(t, "a@example.test", "b@example.test", "c@example.test",
		"d@example.test", "e@example.test", "f@example.test")) {
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "535") || strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("message %d: %v, want a temporary 535 without the password", i, err)
		}
	}
	if n, conns := len(srv.Messages()), srv.Connections(); n != 0 || conns > 2 {
		t.Errorf("%d messages accepted over %d connections, want none over at most 2", n, conns)
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{})
	s := smtpSender(t, srv, srv.URL())
	for _, tc := range []struct {
		code      int
		permanent bool
	}{{550, true}, {554, true}, {552, true}, {451, false}, {421, false}, {452, false}} {
		srv.RejectFirst(1, tc.code, "scripted")
		err := s.Send(t.Context(), testMessage(t))
		if err == nil {
			t.Fatalf("%d: no error", tc.code)
		}
		if got := IsPermanent(err); got != tc.permanent {
			t.Errorf("%d: IsPermanent = %v, want %v (%v)", tc.code, got, tc.permanent, err)
		}
	}

	// Failures that never reach a reply are temporary.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	if err := closed.Close(); err != nil { // or no connection is refused
		t.Fatal(err)
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := silent.Close(); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }() // never greets; closed when the listener is
		}
	}()
	for name, cfg := range map[string]SMTPConfig{
		"connection refused": {Host: "127.0.0.1", Port: port(t, closedAddr), TLS: TLSNone},
		"unknown host":       {Host: "no-such-host.invalid", Port: 25, TLS: TLSNone},
		"timeout":            {Host: "127.0.0.1", Port: port(t, silent.Addr().String()), TLS: TLSNone, Timeout: 200 * time.Millisecond},
	} {
		s, err := NewSMTPSender(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(t.Context(), testMessage(t))
		if err == nil || IsPermanent(err) {
			t.Errorf("%s: %v, want a temporary error", name, err)
		}
	}
	if IsPermanent(nil) || IsPermanent(errors.New("anything else")) || IsPermanent(context.Canceled) {
		t.Error("unclassified errors must be temporary")
	}
}

func TestSMTPSenderHonoursContext(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t, mailtest.Config{})
	srv.Hold(mailtest.HoldBeforeAccept)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- smtpSender(t, srv, srv.URL()).Send(ctx, testMessage(t)) }()
	srv.WaitForHeld(t, 1, 5*time.Second)
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Send succeeded after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send ignored the cancelled context")
	}
	srv.WaitForHeld(t, 0, 5*time.Second)
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d messages accepted", n)
	}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return a.Port
}
