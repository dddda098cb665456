package ingress_test

import (
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/mailer/mailtest"
)

var claimLink = regexp.MustCompile(`http://seats\.example\.test/claim\?token=[A-Za-z0-9_%-]+`)

// tokenFromMail finds the claim link in a text body and returns its token.
func tokenFromMail(t *testing.T, body string) string {
	t.Helper()
	link := claimLink.FindString(body)
	if link == "" {
		t.Fatalf("no claim link in:\n%s", body)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// TestInvitationEndToEnd: assign → the email arrives at a real SMTP server
// → its link claims the seat.
func TestInvitationEndToEnd(t *testing.T) {
	t.Parallel()
	smtp := mailtest.Start(t, mailtest.Config{})
	e := seatdtest.New(t, seatdtest.Options{Mail: smtp.URL()})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Team Plan"})
	seat := assignPending(t, e, ten, "newbie@example.com")

	msgs := smtp.WaitForMessages(t, 1, 10*time.Second)
	m := msgs[0]
	if m.Subject() != "You've been invited to access Team Plan" || len(m.To) != 1 || m.To[0] != "newbie@example.com" {
		t.Errorf("mail subject %q to %v", m.Subject(), m.To)
	}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	html, err := m.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Team Plan", "Acme", ten.CustomerEmail} {
		if !strings.Contains(text, want) || !strings.Contains(html, want) {
			t.Errorf("mail bodies do not name %q", want)
		}
	}
	token := tokenFromMail(t, text)
	r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token})
	if r.Status != 200 || r.JSON(t)["seat"].(map[string]any)["id"] != seat["id"] {
		t.Fatalf("claim with the emailed token: %d %s", r.Status, r.Body)
	}
	// Exactly one delivery, recorded as sent.
	time.Sleep(200 * time.Millisecond)
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
	st := seatdtest.Must(e.DB.InvitationDelivery(t.Context(), seat["id"].(string)))
	if st.State != "sent" || st.Attempts != 1 {
		t.Errorf("delivery ledger %+v", st)
	}
}

// TestInvitationTemporaryFailureRetried: 451 then 250 delivers after a retry.
func TestInvitationTemporaryFailureRetried(t *testing.T) {
	t.Parallel()
	smtp := mailtest.Start(t, mailtest.Config{})
	smtp.RejectFirst(1, 451, "try again later")
	e := seatdtest.New(t, seatdtest.Options{Mail: smtp.URL()})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "retry@example.com")
	smtp.WaitForMessages(t, 1, 10*time.Second)
	seatdtest.WaitFor(t, 5*time.Second, "delivery recorded", func() bool {
		st, err := e.DB.InvitationDelivery(t.Context(), seat["id"].(string))
		return err == nil && st.State == "sent" && st.Attempts == 2
	})
}

// TestInvitationPermanentFailureRecorded: 550 is recorded and not retried.
func TestInvitationPermanentFailureRecorded(t *testing.T) {
	t.Parallel()
	smtp := mailtest.Start(t, mailtest.Config{})
	smtp.RejectAll(550, "no such user")
	e := seatdtest.New(t, seatdtest.Options{Mail: smtp.URL()})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "nobody@example.com")
	seatdtest.WaitFor(t, 5*time.Second, "failure recorded", func() bool {
		st, err := e.DB.InvitationDelivery(t.Context(), seat["id"].(string))
		return err == nil && st.State == "failed"
	})
	time.Sleep(500 * time.Millisecond)
	st := seatdtest.Must(e.DB.InvitationDelivery(t.Context(), seat["id"].(string)))
	if st.Attempts != 1 || !strings.Contains(st.LastError, "550") || smtp.Transactions() != 1 {
		t.Errorf("after a 550: %+v, %d SMTP transactions", st, smtp.Transactions())
	}
}

// TestMailDropEndToEnd: with no SMTP server the invitation is a parseable
// .eml file whose token claims the seat.
func TestMailDropEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: dir})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "dropped@example.com")
	var files []string
	seatdtest.WaitFor(t, 10*time.Second, ".eml written", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		return len(files) == 1
	})
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("the .eml does not parse: %v", err)
	}
	if to := msg.Header.Get("To"); !strings.Contains(to, "dropped@example.com") {
		t.Errorf("To: %q", to)
	}
	raw, _ := os.ReadFile(files[0])
	// The link may be quoted-printable encoded; undo soft breaks and =3D.
	body := strings.NewReplacer("=\r\n", "", "=\n", "", "=3D", "=").Replace(string(raw))
	token := tokenFromMail(t, body)
	r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token})
	if r.Status != 200 || r.JSON(t)["seat"].(map[string]any)["id"] != seat["id"] {
		t.Fatalf("claim with the dropped token: %d %s", r.Status, r.Body)
	}
}
