package ingress_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/mailer/mailtest"
)

// chromiumPath is Debian's chromium package (.ci/run installs it).
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium for the test. Without Chromium the
// test fails in CI (CI=true), where .ci/run installs it, and is skipped on
// a developer's machine.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		msg := fmt.Sprintf("headless Chromium not found at %s (%v): apt-get install -y chromium (.ci/run installs it when missing)", chromiumPath, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(800, 600),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a timeout
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// tab is one browser tab with a deadline per step and a record of the
// console, where Chromium reports Content-Security-Policy violations.
type tab struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	log []string
}

func newTab(t *testing.T, browser context.Context, javascript bool) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.log = append(tb.log, m.String())
			tb.mu.Unlock()
		}
	}()
	tb.do(chromedp.EmulateViewport(800, 600))
	if !javascript {
		tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}))
	}
	return tb
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

func run[T any](tb *tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
	return v
}

// open loads a page and returns the main element's visible text.
func (tb *tab) open(u string) string {
	tb.t.Helper()
	tb.do(chromedp.Navigate(u))
	if strings.Contains(u, "/claim") {
		// Wait for the claim page proper, whatever its state, loaded with
		// its script (deferred scripts run before the load is complete).
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			st, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`(document.readyState === "complete" && document.querySelector("main[data-state]")) ? document.querySelector("main").dataset.state : ""`))
			if err == nil && st != "" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A node read while the document is still being replaced (a redirect,
	// the previous page's script) is gone by the time it is asked for:
	// read again rather than fail.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		cancel()
		if err == nil {
			return text
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("browser: reading %s: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitState polls until the page shown is the claim page in state (its
// main element's data-state) and returns the page's visible text. Errors
// while a navigation is under way are expected and retried.
func (tb *tab) waitState(state string) string {
	tb.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		var err error
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](`(document.readyState === "complete" && document.querySelector("main[data-state]")) ? document.querySelector("main").dataset.state : ""`))
		if err == nil && got == state {
			text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			cancel()
			if err == nil {
				return text
			}
			continue
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	tb.t.Fatalf("the page never reached state %q (last %q)", state, got)
	return ""
}

// waitFor polls the tab's URL until it starts with prefix.
func (tb *tab) waitFor(prefix string) string {
	tb.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		loc := run(tb, chromedp.Location())
		if strings.HasPrefix(loc, prefix) {
			return loc
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("the browser stayed at %s, want %s...", loc, prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot writes the page as <SEATD_SCREENSHOTS>/<name>.png when that
// variable names a directory.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := os.Getenv("SEATD_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := run(tb, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// cspViolations are the console messages about the Content-Security-Policy.
func (tb *tab) cspViolations() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []string
	for _, m := range tb.log {
		if strings.Contains(m, "Content Security Policy") {
			out = append(out, m)
		}
	}
	return out
}

// returnSite stands for the seller's app: the return URL after a claim,
// and a place to show an email's HTML part to the browser.
type returnSite struct {
	*httptest.Server
	mu    sync.Mutex
	email string
}

func newReturnSite(t *testing.T) *returnSite {
	rs := &returnSite{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/email" {
			rs.mu.Lock()
			defer rs.mu.Unlock()
			_, _ = fmt.Fprint(w, rs.email)
			return
		}
		if r.URL.RawQuery != "" && strings.Contains(r.URL.RawQuery, "token") {
			t.Errorf("the return URL was requested with a token in its query: %s", r.URL)
		}
		_, _ = fmt.Fprint(w, `<!doctype html><title>Acme app</title><h1>Welcome to the Acme app</h1>`)
	}))
	t.Cleanup(rs.Close)
	return rs
}

// mailed is an invitation as it arrived in the mail drop.
type mailed struct {
	seatID, link, text, html, subject string
}

// invite assigns a seat to email through the API and reads the invitation
// the mailer wrote to the mail drop.
func inviteByMail(t *testing.T, e *seatdtest.Env, ten seatdtest.Tenant, dropDir, email string) mailed {
	t.Helper()
	seat := assignPending(t, e, ten, email)
	return readMail(t, e, dropDir, seat["id"].(string))
}

var linkInText = regexp.MustCompile(`http://\S+/claim\?token=\S+`)

// readMail waits for the seat's current invitation in the mail drop.
func readMail(t *testing.T, e *seatdtest.Env, dropDir, seatID string) mailed {
	t.Helper()
	var invID string
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT invitation_id FROM seats WHERE id = $1`, seatID).Scan(&invID); err != nil {
		t.Fatalf("invitation of seat %s: %v", seatID, err)
	}
	path := filepath.Join(dropDir, "mail", invID+".eml")
	var raw []byte
	seatdtest.WaitFor(t, 20*time.Second, "the invitation in the mail drop", func() bool {
		var err error
		raw, err = os.ReadFile(path)
		return err == nil
	})
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the .eml does not parse: %v", err)
	}
	m := mailtest.Message{Raw: raw, Header: parsed.Header}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	html, err := m.HTML()
	if err != nil {
		t.Fatal(err)
	}
	link := linkInText.FindString(text)
	if link == "" {
		t.Fatalf("no claim link in the email:\n%s", text)
	}
	return mailed{seatID: seatID, link: link, text: text, html: html, subject: m.Subject()}
}

func seatExpiry(t *testing.T, e *seatdtest.Env, seatID string) time.Time {
	t.Helper()
	var exp time.Time
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT invitation_token_expires_at FROM seats WHERE id = $1`, seatID).Scan(&exp); err != nil {
		t.Fatal(err)
	}
	return exp.UTC()
}

func seatStatus(t *testing.T, e *seatdtest.Env, seatID string) string {
	t.Helper()
	var st string
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT status FROM seats WHERE id = $1`, seatID).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, text)
		}
	}
}

// TestClaimPageInBrowser follows an invitation the way a person does: the
// email from the mail drop, its link in Chromium, the button, the seller's
// app with a working session; then every other state of a link. It runs
// once with JavaScript and once without.
func TestClaimPageInBrowser(t *testing.T) {
	browser := newBrowser(t)
	dropDir := t.TempDir()
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: dropDir, LiveLinks: true})
	site := newReturnSite(t)
	// The member model: the claimant's session belongs to the buyer's
	// account, so it can list the seats it now holds one of.
	withReturn := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan", MemberModel: true, Seats: 20})
	if err := e.DB.SetClaimReturnURL(context.Background(), withReturn.OrgID, site.URL+"/welcome?from=seatd"); err != nil {
		t.Fatal(err)
	}
	noReturn := e.Tenant(seatdtest.TenantOptions{Product: "Team Workspace", Seats: 20})
	// Turns seat-based pricing off while an invitation's page is open.
	pricingOff := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan", Seats: 20})

	for _, mode := range []struct {
		name string
		js   bool
	}{{"javascript", true}, {"no-javascript", false}} {
		t.Run(mode.name, func(t *testing.T) {
			shots := mode.js // one set of screenshots is enough
			shot := func(tb *tab, name string) {
				if shots {
					tb.screenshot(name)
				}
			}
			tb := newTab(t, browser, mode.js)
			invitee := "ada-" + mode.name + "@example.com"
			inv := inviteByMail(t, e, withReturn, dropDir, invitee)
			expires := seatExpiry(t, e, inv.seatID).Format("Mon, 02 Jan 2006 15:04 MST")

			// The email names the organization, the product, both people
			// and the expiry.
			mustContain(t, "the email's text", inv.text, "Pro Plan", "Acme", invitee, withReturn.CustomerEmail, expires)
			mustContain(t, "the email's HTML", inv.html, "Pro Plan", "Acme", expires)
			if inv.subject != "You've been invited to access Pro Plan" {
				t.Errorf("subject %q", inv.subject)
			}
			if shots {
				site.mu.Lock()
				site.email = inv.html
				site.mu.Unlock()
				tb.open(site.URL + "/email")
				tb.screenshot("email")
			}

			// Opening the link shows who invited whom to what, until when,
			// and changes nothing (mail scanners open links too).
			page := tb.open(inv.link)
			mustContain(t, "the ready page", page, "Join Pro Plan at Acme", "Acme", "Pro Plan", invitee, withReturn.CustomerEmail, "Expires", expires, "Claim my seat")
			tb.open(inv.link)
			if st := seatStatus(t, e, inv.seatID); st != "pending" {
				t.Fatalf("opening the link made the seat %s", st)
			}
			enhanced := run(tb, chromedp.Evaluate[bool](`document.querySelector("form.claim").hasAttribute("data-enhanced")`))
			if enhanced != mode.js {
				t.Errorf("claim.js ran: %v, want %v", enhanced, mode.js)
			}
			shot(tb, "page-ready")
			if shots {
				tb.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
				tb.open(inv.link)
				tb.screenshot("page-ready-phone")
				tb.do(chromedp.EmulateViewport(800, 600))
				tb.open(inv.link)
			}

			// The button claims and lands on the seller's app with the
			// session token in the fragment, never in the query. Without
			// JavaScript it is reached and pressed with the keyboard, and
			// the focus must be visible.
			if mode.js {
				tb.do(chromedp.Click(chromedp.CSS("form.claim button")))
			} else {
				focused := false
				for i := 0; i < 10 && !focused; i++ {
					tb.do(chromedp.KeyEvent(kb.Tab))
					focused = run(tb, chromedp.Evaluate[bool](`document.activeElement !== null && document.activeElement.matches("form.claim button")`))
				}
				if !focused {
					t.Fatal("Tab never reached the claim button")
				}
				ring := run(tb, chromedp.Evaluate[string](`(s => s.outlineStyle + " " + s.outlineWidth)(getComputedStyle(document.activeElement))`))
				if ring != "solid 3px" {
					t.Errorf("the focused button's outline is %q, want a visible ring (solid 3px)", ring)
				}
				tb.do(chromedp.KeyEvent(kb.Enter))
			}
			landed := tb.waitFor(site.URL + "/welcome")
			u, err := url.Parse(landed)
			if err != nil {
				t.Fatal(err)
			}
			frag, err := url.ParseQuery(u.Fragment)
			if err != nil {
				t.Fatal(err)
			}
			session := frag.Get("customer_session_token")
			if session == "" || u.Query().Get("from") != "seatd" || strings.Contains(u.RawQuery, session) {
				t.Fatalf("landed on %s: want the return URL with #customer_session_token=...", landed)
			}
			if st := seatStatus(t, e, inv.seatID); st != "claimed" {
				t.Errorf("after the click the seat is %s", st)
			}
			// The token works: the claimant's session reads the seats.
			r := e.Do("GET", seatsPath+"?subscription_id="+withReturn.SubscriptionID, session, nil)
			if r.Status != 200 || !strings.Contains(string(r.Body), `"status":"claimed"`) || !strings.Contains(string(r.Body), invitee) {
				t.Errorf("GET seats with the claimed session: %d %s", r.Status, r.Body)
			}
			if r := e.Do("GET", seatsPath+"?subscription_id="+withReturn.SubscriptionID, "not-"+session, nil); r.Status != 401 {
				t.Errorf("a wrong token answered %d", r.Status)
			}

			// The same link again: already claimed.
			page = tb.open(inv.link)
			mustContain(t, "the already-claimed page", page, "This invitation has already been claimed", "Pro Plan", "Acme")
			if strings.Contains(page, "Claim my seat") {
				t.Error("an already claimed invitation still offers the button")
			}
			shot(tb, "page-already-claimed")

			// Without a return URL the page says what the seat gives and
			// how to sign in.
			inv2 := inviteByMail(t, e, noReturn, dropDir, "grace-"+mode.name+"@example.com")
			tb.open(inv2.link)
			tb.do(chromedp.Click(chromedp.CSS("form.claim button")))
			page = tb.waitState("claimed")
			mustContain(t, "the claimed page", page, "You're in", "Team Workspace", "What your seat gives you", "How to sign in", "grace-"+mode.name+"@example.com")
			if st := seatStatus(t, e, inv2.seatID); st != "claimed" {
				t.Errorf("after the click the seat is %s", st)
			}
			shot(tb, "page-claimed")

			// Expired: the invitation's time ran out.
			inv3 := inviteByMail(t, e, withReturn, dropDir, "expired-"+mode.name+"@example.com")
			if _, err := e.DB.Pool.Exec(context.Background(), `UPDATE seats SET invitation_token_expires_at = now() - interval '1 hour' WHERE id = $1;`, inv3.seatID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.DB.Pool.Exec(context.Background(), `UPDATE invitations SET expires_at = now() - interval '1 hour' WHERE seat_id = $1`, inv3.seatID); err != nil {
				t.Fatal(err)
			}
			page = tb.open(inv3.link)
			mustContain(t, "the expired page", page, "This invitation has expired", "Ask "+withReturn.CustomerEmail+" to resend it", "Pro Plan")
			shot(tb, "page-expired")

			// Replaced: a resend makes the first link a dead one.
			inv4 := inviteByMail(t, e, withReturn, dropDir, "resent-"+mode.name+"@example.com")
			if r := e.Do("POST", seatsPath+"/"+inv4.seatID+"/resend", withReturn.Token, nil); r.Status != 200 {
				t.Fatalf("resend: %d %s", r.Status, r.Body)
			}
			newer := readMail(t, e, dropDir, inv4.seatID)
			page = tb.open(inv4.link)
			mustContain(t, "the replaced page", page, "A newer invitation replaced this one", "Pro Plan")
			shot(tb, "page-replaced")
			page = tb.open(newer.link)
			mustContain(t, "the newer link", page, "Claim my seat")

			// Revoked: the buyer took the seat back.
			if r := e.Do("DELETE", seatsPath+"/"+inv4.seatID, withReturn.Token, nil); r.Status != 200 {
				t.Fatalf("revoke: %d %s", r.Status, r.Body)
			}
			page = tb.open(newer.link)
			mustContain(t, "the revoked page", page, "This invitation was withdrawn", "Pro Plan", "Acme")
			shot(tb, "page-revoked")

			// Seat-based pricing switched off while the page was open: the
			// button brings the invitee back to the page, which says why,
			// and the seat stays pending.
			inv5 := inviteByMail(t, e, pricingOff, dropDir, "paused-"+mode.name+"@example.com")
			tb.open(inv5.link)
			e.SetSeatPricing(pricingOff.OrgID, false)
			tb.do(chromedp.Click(chromedp.CSS("form.claim button")))
			page = tb.waitState("seat_pricing_off")
			mustContain(t, "the seat-pricing-off page", page, "This seat can't be claimed right now", "Acme doesn't currently offer seats",
				"Pro Plan", "Ask "+pricingOff.CustomerEmail+" about it")
			if st := seatStatus(t, e, inv5.seatID); st != "pending" {
				t.Errorf("a claim with pricing off made the seat %s", st)
			}
			shot(tb, "page-seat-pricing-off")
			e.SetSeatPricing(pricingOff.OrgID, true)

			// Unknown: a link cut short by an email app.
			page = tb.open(e.HTTP.URL + "/claim?token=" + url.QueryEscape(inv.link[len(inv.link)-20:]))
			mustContain(t, "the unknown page", page, "We don't recognise this invitation link")
			shot(tb, "page-unknown")

			if v := tb.cspViolations(); len(v) > 0 {
				t.Errorf("the pages broke their own Content-Security-Policy:\n%s", strings.Join(v, "\n"))
			}
		})
	}
}

// TestClaimPageInBrowserRefusals: what a hostile or unlucky visit sees in
// a real browser. Another site's form cannot claim, another site cannot
// frame the page, and a claim refused by the rate limit is explained in
// place by claim.js, with the button usable again.
func TestClaimPageInBrowserRefusals(t *testing.T) {
	browser := newBrowser(t)
	dropDir := t.TempDir()
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: dropDir, LiveLinks: true, RateLimit: 0.001, RateBurst: 1})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	inv := inviteByMail(t, e, ten, dropDir, "target@example.com")
	u, err := url.Parse(inv.link)
	if err != nil {
		t.Fatal(err)
	}
	token := u.Query().Get("token")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/forge":
			_, _ = fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/claim"><input type="hidden" name="token" value="%s"><button id="go">Win a prize</button></form>`,
				e.HTTP.URL, token)
		case "/frame":
			_, _ = fmt.Fprintf(w, `<!doctype html><iframe src="%s"></iframe>`, inv.link)
		}
	}))
	t.Cleanup(evil.Close)
	tb := newTab(t, browser, true)

	// Another origin's form posting the token: refused, nothing changes.
	tb.open(evil.URL + "/forge")
	tb.do(chromedp.Click(chromedp.ID("go")))
	page := tb.waitState("cross_site")
	mustContain(t, "the cross-site page", page, "Claim not accepted")
	if st := seatStatus(t, e, inv.seatID); st != "pending" {
		t.Fatalf("a cross-site form made the seat %s", st)
	}

	// Another origin framing the page: the browser refuses to show it.
	tb.open(evil.URL + "/frame")
	seatdtest.WaitFor(t, 10*time.Second, "the browser to refuse the frame", func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, m := range tb.log {
			if strings.Contains(m, "frame-ancestors") {
				return true
			}
		}
		return false
	})

	// The per-address claim limit, spent by an earlier claim: claim.js
	// says so next to the button and gives the button back.
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": "spent"}); r.Status != 400 {
		t.Fatalf("spending the claim limit: %d %s", r.Status, r.Body)
	}
	tb.open(inv.link)
	tb.do(chromedp.Click(chromedp.CSS("form.claim button")))
	deadline := time.Now().Add(20 * time.Second)
	var status string
	for time.Now().Before(deadline) && !strings.Contains(status, "Too many attempts") {
		time.Sleep(50 * time.Millisecond)
		status = run(tb, chromedp.Evaluate[string](`document.getElementById("claim-status").textContent`))
	}
	if !strings.Contains(status, "Too many attempts") {
		t.Fatalf("the status next to the button says %q", status)
	}
	if disabled := run(tb, chromedp.Evaluate[bool](`document.querySelector("form.claim button").disabled`)); disabled {
		t.Error("the button stays disabled after a refused claim")
	}
	if st := seatStatus(t, e, inv.seatID); st != "pending" {
		t.Errorf("a rate-limited claim made the seat %s", st)
	}
}
