package invite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func sample() Invitation {
	return Invitation{Organization: "Smith & Sons", Product: "Pro <Plan>", Inviter: "o'neil@example.test",
		Invitee: "ada@example.test", ExpiresAt: now.Add(24 * time.Hour)}
}

func render(t *testing.T, tm *Templates, p Page) string {
	t.Helper()
	var b strings.Builder
	if err := tm.RenderPage(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Each state has its own words, and customer-typed names are escaped.
func TestPageStates(t *testing.T) {
	tm := Default()
	says := map[State]string{
		Ready: "Claim my seat", ClaimedNow: "What your seat gives you", AlreadyClaimed: "already been claimed",
		Expired: "Ask o&#39;neil@example.test to resend it", Revoked: "was withdrawn", Replaced: "A newer invitation replaced this one",
		Unknown: "recognise this invitation link", RateLimited: "Too many attempts", CrossSite: "Claim not accepted",
		Pending: "Finishing your claim", Failed: "Something went wrong",
		SeatPricingOff: "Smith &amp; Sons doesn't currently offer seats (its seat-based pricing is switched off)",
	}
	if len(says) != len(States) {
		t.Fatalf("%d states, %d tested", len(States), len(says))
	}
	for _, st := range States {
		html := render(t, tm, Page{State: st, Invitation: sample(), Token: "tok", Now: now})
		if !strings.Contains(html, says[st]) {
			t.Errorf("%s page does not say %q:\n%s", st, says[st], html)
		}
		namesProduct := st == Ready || st == ClaimedNow || st == AlreadyClaimed || st == Expired || st == Revoked || st == Replaced || st == SeatPricingOff
		if strings.Contains(html, "<Plan>") || (namesProduct && !strings.Contains(html, "Pro &lt;Plan&gt;")) {
			t.Errorf("%s page: product name not escaped or missing", st)
		}
		if (st == Ready) != strings.Contains(html, "<form") {
			t.Errorf("%s page: a form only on the ready page", st)
		}
		if (st == Ready) != strings.Contains(html, "<script") {
			t.Errorf("%s page: the script only on the ready page", st)
		}
	}
	// Without an inviter the words fall back instead of leaving a gap.
	html := render(t, tm, Page{State: Expired, Invitation: Invitation{Product: "P", ExpiresAt: now}, Now: now})
	if !strings.Contains(html, "Ask the person who invited you to resend it") {
		t.Errorf("expired page without an inviter:\n%s", html)
	}
	// The seat-pricing page names whom to ask, with or without an inviter.
	html = render(t, tm, Page{State: SeatPricingOff, Invitation: sample(), Now: now})
	if !strings.Contains(html, "Ask o&#39;neil@example.test about it") || !strings.Contains(html, "expires on <time datetime=\"2026-03-02T09:30:00Z\">") {
		t.Errorf("seat pricing off page:\n%s", html)
	}
	html = render(t, tm, Page{State: SeatPricingOff, Invitation: Invitation{Product: "P", ExpiresAt: now}, Now: now})
	if !strings.Contains(html, "your organization doesn't currently offer seats") || !strings.Contains(html, "Ask the person who invited you about it") {
		t.Errorf("seat pricing off page without names:\n%s", html)
	}
}

func TestEmail(t *testing.T) {
	out, err := Default().RenderEmail(Email{Invitation: sample(), ClaimURL: "https://seats.example.test/claim?token=a&b", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "You've been invited to access Pro <Plan>" {
		t.Errorf("subject %q", out.Subject)
	}
	for _, want := range []string{"o'neil@example.test has invited you to Pro <Plan> at Smith & Sons.", "Invited:      ada@example.test",
		"expires on Mon, 02 Mar 2026 09:30 UTC (in 24 hours)", "https://seats.example.test/claim?token=a&b"} {
		if !strings.Contains(out.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, out.Text)
		}
	}
	for _, want := range []string{"Pro &lt;Plan&gt;", "Smith &amp; Sons", `href="https://seats.example.test/claim?token=a&amp;b"`, ".button {"} {
		if !strings.Contains(out.HTML, want) {
			t.Errorf("html lacks %q", want)
		}
	}
}

func TestExpiresIn(t *testing.T) {
	for d, want := range map[time.Duration]string{
		168 * time.Hour:               "in 168 hours",
		23*time.Hour + 59*time.Minute: "in 24 hours",
		90 * time.Minute:              "in 2 hours",
		70 * time.Minute:              "in 1 hour",
		10 * time.Minute:              "in less than an hour",
		-time.Minute:                  "already expired",
	} {
		if got := ExpiresIn(d); got != want {
			t.Errorf("ExpiresIn(%v) = %q, want %q", d, got, want)
		}
	}
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory overrides the files it has and leaves the others embedded.
func TestLoadOverride(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "email.txt", `{{define "subject"}}Your {{.Product}} seat awaits{{end}}{{define "text"}}Hi! {{.ClaimURL}}{{end}}`)
	write(t, dir, "style.css", ".button { background: #be185d; }")
	write(t, dir, ".DS_Store", "ignored")
	tm, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tm.RenderEmail(Email{Invitation: sample(), ClaimURL: "https://x.test/claim?token=t", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "Your Pro <Plan> seat awaits" || out.Text != "Hi! https://x.test/claim?token=t" {
		t.Errorf("overridden email: %q %q", out.Subject, out.Text)
	}
	if !strings.Contains(out.HTML, "#be185d") || !strings.Contains(out.HTML, "You're invited to join") {
		t.Errorf("the HTML body should keep the embedded template with the new colours:\n%s", out.HTML)
	}
	css, _ := tm.Asset("style.css")
	def, _ := Default().Asset("style.css")
	if string(css.Body) != ".button { background: #be185d; }" || css.Version == def.Version {
		t.Errorf("style.css %q version %s (default %s)", css.Body, css.Version, def.Version)
	}
	if !strings.Contains(render(t, tm, Page{State: Ready, Invitation: sample(), Now: now}), "style.css?v="+css.Version) {
		t.Error("the page does not link the new stylesheet version")
	}
}

// A bad directory stops the start with a message naming the problem.
func TestLoadRefusesBadOverrides(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, says string
	}{
		{"unknown file", "styles.css", "x", `unknown file "styles.css"`},
		{"syntax error", "page.html", `{{define "page"}}{{if}}{{end}}`, "page.html"},
		{"missing block", "email.txt", `{{define "subject"}}x{{end}}`, `must define "text"`},
		{"bad field", "page.html", `{{define "page"}}{{.Nope}}{{end}}`, "Nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tc.file, tc.body)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Load: %v, want an error saying %q", err, tc.says)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory was accepted")
	}
}
