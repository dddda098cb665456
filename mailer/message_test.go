package mailer

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/mailer/mailtest"
)

var testNow = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func compose(t *testing.T, c Composer, inv Invitation) (*Message, mailtest.Message) {
	t.Helper()
	if inv.ID == "" {
		inv.ID = "0b5c7d9e-1111-4222-8333-944455556666"
	}
	if inv.To == "" {
		inv.To = "invitee@example.test"
	}
	if inv.Token == "" {
		inv.Token = "tok"
	}
	if inv.ExpiresAt.IsZero() {
		inv.ExpiresAt = testNow.Add(24 * time.Hour)
	}
	m, err := c.Compose(inv, testNow)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := m.build()
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := msg.WriteTo(&raw); err != nil {
		t.Fatal(err)
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw.Bytes()))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%s", err, raw.String())
	}
	return m, mailtest.Message{Raw: raw.Bytes(), Header: parsed.Header}
}

func bodies(t *testing.T, m mailtest.Message) (text, html string) {
	t.Helper()
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	html, err = m.HTML()
	if err != nil {
		t.Fatal(err)
	}
	return text, html
}

func TestComposeEscapesHTML(t *testing.T) {
	_, m := compose(t, Composer{PublicURL: testPublicURL}, Invitation{
		ProductName: `<script>alert("x")</script>`, Organization: "Smith & Sons", InviterEmail: "o'neil@example.test",
	})
	text, html := bodies(t, m)
	if strings.Contains(html, "<script>") {
		t.Errorf("HTML body contains an unescaped product name:\n%s", html)
	}
	for _, want := range []string{"&lt;script&gt;", "Smith &amp; Sons", "o&#39;neil@example.test"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML body lacks %q:\n%s", want, html)
		}
	}
	// The text body is plain text: nothing to escape.
	if !strings.Contains(text, `<script>alert("x")</script> at Smith & Sons`) {
		t.Errorf("text body:\n%s", text)
	}
	if got, want := m.Subject(), `You've been invited to access <script>alert("x")</script>`; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
}

func TestComposeDefaults(t *testing.T) {
	msg, m := compose(t, Composer{PublicURL: "https://seats.example.com:8443/app/"}, Invitation{
		ProductName: "Acme Pro", Organization: "Acme",
	})
	text, _ := bodies(t, m)
	if !strings.Contains(text, "Your team has invited you to Acme Pro at Acme.") {
		t.Errorf("no inviter should read Your team:\n%s", text)
	}
	if got, want := msg.From, "seatd <no-reply@seats.example.com>"; got != want {
		t.Errorf("From = %q, want %q", got, want)
	}
	if got, want := m.MessageID(), "<invitation-0b5c7d9e-1111-4222-8333-944455556666@seats.example.com>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	if !strings.Contains(text, "https://seats.example.com:8443/app/claim?token=tok") {
		t.Errorf("claim link should keep the public URL's port and path:\n%s", text)
	}
	if !strings.Contains(text, "This invitation expires on Mon, 02 Mar 2026 09:30 UTC (in 24 hours).") {
		t.Errorf("expiry:\n%s", text)
	}
	if !strings.Contains(text, "This invitation was sent to invitee@example.test.") {
		t.Errorf("footer:\n%s", text)
	}
}

// The token is URL-escaped in the link and comes back intact.
func TestClaimURLEscapesToken(t *testing.T) {
	token := "a+b/c=d&e f"
	link, err := ClaimURL("http://localhost:8080", token)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/claim" || u.Query().Get("token") != token || u.RawQuery != "token="+url.QueryEscape(token) {
		t.Errorf("ClaimURL = %q", link)
	}
	for _, bad := range []string{"", "seats.example.com", "javascript:alert(1)", "ftp://example.com"} {
		if _, err := ClaimURL(bad, token); err == nil {
			t.Errorf("ClaimURL(%q) accepted", bad)
		}
	}
}

func TestMessageIDDomain(t *testing.T) {
	for _, tc := range []struct{ publicURL, from, want string }{
		{"https://Seats.Example.com", "", "invitation-X@seats.example.com"},
		{"http://127.0.0.1:8080", "seatd <no-reply@mail.example.org>", "invitation-X@mail.example.org"},
		{"http://[::1]:8080", "", "invitation-X@localhost"},
		{"", "bad address", "invitation-X@localhost"},
	} {
		if got := MessageID("X", tc.publicURL, tc.from); got != tc.want {
			t.Errorf("MessageID(%q, %q) = %q, want %q", tc.publicURL, tc.from, got, tc.want)
		}
	}
}

// A name with a line break cannot add a header.
func TestComposeFlattensLineBreaks(t *testing.T) {
	_, m := compose(t, Composer{PublicURL: testPublicURL}, Invitation{ProductName: "Evil\r\nBcc: victim@example.test"})
	if got := m.Header.Get("Bcc"); got != "" {
		t.Fatalf("injected Bcc header %q", got)
	}
	if got, want := m.Subject(), "You've been invited to access Evil Bcc: victim@example.test"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
}

func TestMessageDescriptionsHideToken(t *testing.T) {
	msg, _ := compose(t, Composer{PublicURL: testPublicURL}, Invitation{Token: "very-secret-token"})
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "msg", msg, "value", *msg)
	for _, s := range []string{fmt.Sprint(msg), fmt.Sprint(*msg), fmt.Sprintf("%v", *msg), logs.String()} {
		if strings.Contains(s, "very-secret-token") {
			t.Errorf("description leaks the token: %s", s)
		}
	}
}

func TestComposeRejectsBadInput(t *testing.T) {
	c := Composer{PublicURL: testPublicURL}
	if _, err := c.Compose(Invitation{ID: "x", To: "a@example.test"}, testNow); err == nil {
		t.Error("composed an invitation without a token")
	}
	m, err := c.Compose(Invitation{ID: "x", To: "not an address", Token: "t"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.build(); err == nil || !IsPermanent(err) {
		t.Errorf("build with a bad recipient: %v, want a permanent error", err)
	}
}

func TestComposeUnicode(t *testing.T) {
	_, m := compose(t, Composer{PublicURL: testPublicURL}, Invitation{ProductName: "Café Pro ✓", Organization: "Zürich AG"})
	if got, want := m.Subject(), "You've been invited to access Café Pro ✓"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	text, html := bodies(t, m)
	for _, body := range []string{text, html} {
		if !strings.Contains(body, "Café Pro ✓ at Zürich AG") {
			t.Errorf("body:\n%s", body)
		}
	}
}
