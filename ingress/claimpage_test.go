package ingress_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/mailer/invite"
)

// page is one answer of the claim page, redirects not followed.
type page struct {
	status int
	header http.Header
	body   string
}

func claimReq(t *testing.T, e *seatdtest.Env, method, path string, form url.Values, headers ...string) page {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.HTTP.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return page{resp.StatusCode, resp.Header, string(b)}
}

func pageOf(token string) string { return "/claim?" + url.Values{"token": {token}}.Encode() }

// back is where the form sends the browser: the page, relative to /claim.
func back(token string) string { return "claim?" + url.Values{"token": {token}}.Encode() }

// A browser's form post from the page itself.
var sameOrigin = []string{"Sec-Fetch-Site", "same-origin"}

func requestCount(t *testing.T, e *seatdtest.Env) (n int) {
	t.Helper()
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var inlineScript = regexp.MustCompile(`<script[^>]*>[^<]+</script>|\son[a-z]+=|\sstyle=`)

// checkHeaders asserts the security headers of an HTML page.
func checkHeaders(t *testing.T, what string, p page) {
	t.Helper()
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("%s: CSP %q allows unsafe sources", what, csp)
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s: %s = %q, want %q", what, h, got, want)
		}
	}
	if m := inlineScript.FindString(p.body); m != "" {
		t.Errorf("%s: inline script or style %q", what, m)
	}
}

// Every state of the page answers with its own words and status, the
// security headers, and no change to anything.
func TestClaimPageStates(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	ready := assignPending(t, e, ten, "ready@example.com")
	readyTok := invitationToken(t, e, ready["id"].(string))
	before := requestCount(t, e)

	p := claimReq(t, e, "GET", pageOf(readyTok), nil)
	if p.status != 200 || !strings.Contains(p.body, "Join Pro Plan at Acme") || !strings.Contains(p.body, `name="token" value="`+readyTok+`"`) {
		t.Fatalf("ready page: %d\n%s", p.status, p.body)
	}
	checkHeaders(t, "ready page", p)
	for i := 0; i < 3; i++ {
		claimReq(t, e, "GET", pageOf(readyTok), nil)
		claimReq(t, e, "HEAD", pageOf(readyTok), nil)
	}
	if n := requestCount(t, e); n != before {
		t.Errorf("opening the page recorded %d requests", n-before)
	}
	if st := seatStatus(t, e, ready["id"].(string)); st != "pending" {
		t.Errorf("opening the page made the seat %s", st)
	}

	for _, tc := range []struct {
		token  string
		status int
		says   string
	}{
		{"", 404, "We don't recognise this invitation link"},
		{"no-such-token", 404, "We don't recognise this invitation link"},
		{strings.Repeat("x", 600), 404, "We don't recognise"},
	} {
		p := claimReq(t, e, "GET", pageOf(tc.token), nil)
		if p.status != tc.status || !strings.Contains(p.body, tc.says) || strings.Contains(p.body, "<form") {
			t.Errorf("token %.20q: %d, want %d saying %q:\n%s", tc.token, p.status, tc.status, tc.says, p.body)
		}
		checkHeaders(t, "unknown page", p)
	}

	// Assets come from the same origin, typed, not sniffable.
	a := claimReq(t, e, "GET", "/claim/assets/claim.js", nil)
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/javascript") || a.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(a.body, "data-enhanced") {
		t.Errorf("claim.js: %d %v", a.status, a.header)
	}
	if a := claimReq(t, e, "GET", "/claim/assets/secret.key", nil); a.status != 404 {
		t.Errorf("unknown asset: %d", a.status)
	}
}

// The form claims through the queue; without a return URL it lands on the
// page that says what the seat gives; with one, on the organization's app
// with the session token in the fragment.
func TestClaimForm(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan", MemberModel: true})

	seat := assignPending(t, e, ten, "form@example.com")
	tok := invitationToken(t, e, seat["id"].(string))
	p := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, sameOrigin...)
	if p.status != 303 || p.header.Get("Location") != back(tok)+"&claimed=1" {
		t.Fatalf("claim without a return URL: %d Location %q", p.status, p.header.Get("Location"))
	}
	if st := seatStatus(t, e, seat["id"].(string)); st != "claimed" {
		t.Fatalf("after the form the seat is %s", st)
	}
	done := claimReq(t, e, "GET", "/"+p.header.Get("Location"), nil)
	if done.status != 200 || !strings.Contains(done.body, "You're in") || !strings.Contains(done.body, "How to sign in") {
		t.Errorf("claimed page: %d\n%s", done.status, done.body)
	}
	checkHeaders(t, "claimed page", done)
	// The same form again (a double click): nothing new is claimed, and
	// the browser, which shows the second answer, still says "you're in".
	again := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, sameOrigin...)
	if again.status != 303 || again.header.Get("Location") != back(tok)+"&claimed=1" {
		t.Errorf("second claim: %d %q", again.status, again.header.Get("Location"))
	}
	if p := claimReq(t, e, "GET", pageOf(tok), nil); !strings.Contains(p.body, "already been claimed") {
		t.Errorf("after the claim the page says:\n%s", p.body)
	}

	// With a return URL: 303 there, the token only in the fragment.
	ret := "https://app.acme.test/welcome?from=seatd"
	if err := e.DB.SetClaimReturnURL(context.Background(), ten.OrgID, ret); err != nil {
		t.Fatal(err)
	}
	seat2 := assignPending(t, e, ten, "back@example.com")
	tok2 := invitationToken(t, e, seat2["id"].(string))
	ready := claimReq(t, e, "GET", pageOf(tok2), nil)
	if csp := ready.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.acme.test;") {
		t.Errorf("the ready page's CSP does not let the form's redirect reach the return URL: %q", csp)
	}
	p = claimReq(t, e, "POST", "/claim", url.Values{"token": {tok2}}, sameOrigin...)
	loc, err := url.Parse(p.header.Get("Location"))
	if p.status != 303 || err != nil || !strings.HasPrefix(loc.String(), ret+"#customer_session_token=") {
		t.Fatalf("claim with a return URL: %d Location %q", p.status, p.header.Get("Location"))
	}
	frag, _ := url.ParseQuery(loc.Fragment)
	session := frag.Get("customer_session_token")
	if r := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, session, nil); r.Status != 200 || !strings.Contains(string(r.Body), "back@example.com") {
		t.Errorf("the session from the fragment: %d %s", r.Status, r.Body)
	}
	// A double click's second answer: the page links to the app, and the
	// session token is not handed out a second time.
	again = claimReq(t, e, "POST", "/claim", url.Values{"token": {tok2}}, sameOrigin...)
	if again.status != 303 || strings.Contains(again.header.Get("Location"), "customer_session_token") {
		t.Fatalf("second claim with a return URL: %d %q", again.status, again.header.Get("Location"))
	}
	done = claimReq(t, e, "GET", "/"+again.header.Get("Location"), nil)
	if !strings.Contains(done.body, `href="https://app.acme.test/welcome?from=seatd">Continue to Pro Plan`) || strings.Contains(done.body, session) {
		t.Errorf("claimed page with a return URL:\n%s", done.body)
	}

	// Two posts at once (a double click): one claims and gets the token,
	// the other is sent to the "you're in" page, without one.
	seat4 := assignPending(t, e, ten, "double@example.com")
	tok4 := invitationToken(t, e, seat4["id"].(string))
	locs := make(chan string, 2)
	for i := 0; i < 2; i++ {
		go func() {
			locs <- claimReq(t, e, "POST", "/claim", url.Values{"token": {tok4}}, sameOrigin...).header.Get("Location")
		}()
	}
	var withToken, youreIn int
	for i := 0; i < 2; i++ {
		switch l := <-locs; {
		case strings.HasPrefix(l, ret+"#customer_session_token="):
			withToken++
		case l == back(tok4)+"&claimed=1":
			youreIn++
		default:
			t.Errorf("double click answered Location %q", l)
		}
	}
	if withToken != 1 || youreIn != 1 {
		t.Errorf("double click: %d redirects with a token, %d to the claimed page; want one each", withToken, youreIn)
	}

	// claim.js asks for JSON and gets the same decision.
	seat3 := assignPending(t, e, ten, "script@example.com")
	tok3 := invitationToken(t, e, seat3["id"].(string))
	p = claimReq(t, e, "POST", "/claim", url.Values{"token": {tok3}}, "Sec-Fetch-Site", "same-origin", "Accept", "application/json")
	var out struct{ Location string }
	if p.status != 200 || json.Unmarshal([]byte(p.body), &out) != nil || !strings.HasPrefix(out.Location, ret+"#customer_session_token=") {
		t.Errorf("claim from claim.js: %d %s", p.status, p.body)
	}
}

// A claim posted from another site is refused and changes nothing; so is
// a form without a token.
func TestClaimFormRefusesCrossSite(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "victim@example.com")
	tok := invitationToken(t, e, seat["id"].(string))
	before := requestCount(t, e)
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "https://evil.example"},
	} {
		p := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, h...)
		if p.status != 403 || !strings.Contains(p.body, "Claim not accepted") {
			t.Errorf("POST with %v: %d\n%s", h, p.status, p.body)
		}
		checkHeaders(t, "cross-site page", p)
		j := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, h[0], h[1], "Accept", "application/json")
		if j.status != 403 || !strings.Contains(j.body, `"message"`) {
			t.Errorf("JSON POST with %v: %d %s", h, j.status, j.body)
		}
	}
	for _, form := range []url.Values{{}, {"token": {""}}, {"token": {strings.Repeat("a", 600)}}} {
		if p := claimReq(t, e, "POST", "/claim", form, sameOrigin...); p.status != 404 {
			t.Errorf("POST %v: %d", form, p.status)
		}
	}
	if n := requestCount(t, e); n != before {
		t.Errorf("refused claims recorded %d requests", n-before)
	}
	if st := seatStatus(t, e, seat["id"].(string)); st != "pending" {
		t.Errorf("refused claims made the seat %s", st)
	}
}

// Page lookups are limited per client address; over the limit the answer
// is a page with Retry-After, and the limit is the page's own.
func TestClaimPageRateLimit(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	var ok, limited int
	var last page
	for i := 0; i < 60; i++ {
		p := claimReq(t, e, "GET", pageOf("probe-"+string(rune('a'+i%26))), nil)
		switch p.status {
		case 404:
			ok++
		case 429:
			limited++
			last = p
		default:
			t.Fatalf("lookup %d: %d", i, p.status)
		}
	}
	// A burst of 30 and 2 per second: a fast loop gets about 30 through.
	if ok < 30 || ok > 35 || limited == 0 {
		t.Errorf("60 lookups from one address: %d answered, %d limited", ok, limited)
	}
	if last.header.Get("Retry-After") == "" || !strings.Contains(last.body, "Too many attempts") {
		t.Errorf("429 page: %v\n%s", last.header, last.body)
	}
	checkHeaders(t, "rate-limited page", last)
}

// The claim form shares the per-address claim limit of the JSON API.
func TestClaimFormRateLimit(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{RateLimit: 0.01, RateBurst: 2})
	var statuses []int
	for i := 0; i < 3; i++ {
		statuses = append(statuses, claimReq(t, e, "POST", "/claim", url.Values{"token": {"unknown"}}, sameOrigin...).status)
	}
	if statuses[0] != 303 || statuses[1] != 303 || statuses[2] != 429 {
		t.Errorf("three claims with a burst of two: %v", statuses)
	}
}

// An operator's template directory changes the words and colours of the
// page and the email without a rebuild.
func TestTemplateOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	css := "body { background: #fff0f6; }\n"
	if err := os.WriteFile(filepath.Join(dir, "style.css"), []byte(css), 0o644); err != nil {
		t.Fatal(err)
	}
	pageSrc, err := invite.EmbeddedFile("page.html")
	if err != nil {
		t.Fatal(err)
	}
	custom := strings.Replace(string(pageSrc), "Claim my seat", "Take my seat at {{.Organization}}", 1)
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := invite.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := seatdtest.New(t, seatdtest.Options{Templates: tmpl})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "custom@example.com")
	p := claimReq(t, e, "GET", pageOf(invitationToken(t, e, seat["id"].(string))), nil)
	if !strings.Contains(p.body, "Take my seat at Acme") || strings.Contains(p.body, "Claim my seat") {
		t.Errorf("the overridden page:\n%s", p.body)
	}
	href := regexp.MustCompile(`href="(claim/assets/style\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(p.body)
	if href == nil {
		t.Fatalf("no stylesheet link in:\n%s", p.body)
	}
	if a := claimReq(t, e, "GET", "/"+href[1], nil); a.body != css {
		t.Errorf("style.css served %q, want the override", a.body)
	}
}

// A seat revoked after its invitation ran out (as the expiry sweeper
// does) reads as expired to the invitee; one revoked before, as withdrawn.
func TestClaimPageExpiredThenRevoked(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	late := assignPending(t, e, ten, "late@example.com")
	lateTok := invitationToken(t, e, late["id"].(string))
	early := assignPending(t, e, ten, "early@example.com")
	earlyTok := invitationToken(t, e, early["id"].(string))
	if _, err := e.DB.Pool.Exec(context.Background(), `UPDATE seats SET invitation_token_expires_at = now() - interval '1 minute' WHERE id = $1`, late["id"]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.DB.Pool.Exec(context.Background(), `UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE seat_id = $1`, late["id"]); err != nil {
		t.Fatal(err)
	}
	if p := claimReq(t, e, "GET", pageOf(lateTok), nil); p.status != 410 || !strings.Contains(p.body, "This invitation has expired") {
		t.Errorf("expired page: %d\n%s", p.status, p.body)
	}
	// The button of a page opened before expiry: no claim, the page explains.
	if p := claimReq(t, e, "POST", "/claim", url.Values{"token": {lateTok}}, sameOrigin...); p.status != 303 || p.header.Get("Location") != back(lateTok) {
		t.Errorf("claiming an expired invitation: %d %q", p.status, p.header.Get("Location"))
	}
	for _, id := range []any{late["id"], early["id"]} {
		if r := e.Do("DELETE", seatsPath+"/"+id.(string), ten.Token, nil); r.Status != 200 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
	}
	if p := claimReq(t, e, "GET", pageOf(lateTok), nil); p.status != 410 || !strings.Contains(p.body, "This invitation has expired") {
		t.Errorf("expired, then revoked: %d\n%s", p.status, p.body)
	}
	if p := claimReq(t, e, "GET", pageOf(earlyTok), nil); p.status != 410 || !strings.Contains(p.body, "This invitation was withdrawn") {
		t.Errorf("revoked: %d\n%s", p.status, p.body)
	}
}

// When the worker is slow, the claim stays queued and the page says it is
// being finished; once the worker applies it, the same page says "you're in".
func TestClaimFormWhileWorkerIsSlow(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1, SyncTimeout: 300 * time.Millisecond})
	stop := e.StartWorker()
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "slow@example.com"})
	if r.Status != 200 {
		t.Fatalf("assign: %d %s", r.Status, r.Body)
	}
	seatID := r.JSON(t)["id"].(string)
	tok := invitationToken(t, e, seatID)
	stop()
	p := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, sameOrigin...)
	if p.status != 303 || p.header.Get("Location") != back(tok)+"&claimed=1" {
		t.Fatalf("claim with no worker: %d %q", p.status, p.header.Get("Location"))
	}
	if w := claimReq(t, e, "GET", "/"+p.header.Get("Location"), nil); w.status != 202 || !strings.Contains(w.body, "Finishing your claim") || strings.Contains(w.body, "<form") {
		t.Errorf("page while queued: %d\n%s", w.status, w.body)
	}
	e.StartWorker()
	seatdtest.WaitFor(t, 20*time.Second, "the queued claim applied", func() bool { return seatStatus(t, e, seatID) == "claimed" })
	if done := claimReq(t, e, "GET", "/"+p.header.Get("Location"), nil); done.status != 200 || !strings.Contains(done.body, "You're in") {
		t.Errorf("page after the worker: %d\n%s", done.status, done.body)
	}
}

// An invitation of an organization that has switched seat-based pricing
// off cannot be claimed (the claim API answers 403 FeatureNotEnabled): the
// page says why and whom to ask, with 403 and no button; the form sends
// the invitee back to that page; neither records a request or changes the
// seat. A link that is already dead still says what became of it, and once
// pricing is back on the same link is ready again.
func TestClaimPageSeatPricingOff(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	seat := assignPending(t, e, ten, "off@example.com")["id"].(string)
	tok := invitationToken(t, e, seat)
	withdrawn := assignPending(t, e, ten, "withdrawn@example.com")["id"].(string)
	withdrawnTok := invitationToken(t, e, withdrawn)
	if r := e.Do("DELETE", seatsPath+"/"+withdrawn, ten.Token, nil); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	// A page opened before pricing went off still shows the button.
	opened := claimReq(t, e, "GET", pageOf(tok), nil)
	if opened.status != 200 || !strings.Contains(opened.body, "Claim my seat") {
		t.Fatalf("ready page: %d\n%s", opened.status, opened.body)
	}

	e.SetSeatPricing(ten.OrgID, false)
	before := requestCount(t, e)
	says := []string{"This seat can't be claimed right now", "Acme doesn't currently offer seats (its seat-based pricing is switched off)",
		"Pro Plan", "Ask " + ten.CustomerEmail + " about it", `data-state="seat_pricing_off"`}
	for _, path := range []string{pageOf(tok), pageOf(tok) + "&claimed=1"} {
		p := claimReq(t, e, "GET", path, nil)
		if p.status != 403 || strings.Contains(p.body, "<form") || strings.Contains(p.body, tok) {
			t.Errorf("GET %s with pricing off: %d, want 403 without the form or the token:\n%s", path, p.status, p.body)
		}
		mustContain(t, "the seat-pricing-off page", p.body, says...)
		checkHeaders(t, "seat-pricing-off page", p)
		if h := claimReq(t, e, "HEAD", path, nil); h.status != 403 {
			t.Errorf("HEAD %s: %d", path, h.status)
		}
	}
	if p := claimReq(t, e, "GET", pageOf(withdrawnTok), nil); p.status != 410 || !strings.Contains(p.body, "This invitation was withdrawn") {
		t.Errorf("a withdrawn link with pricing off: %d\n%s", p.status, p.body)
	}

	// The button of the page opened before: back to the page, which says why.
	p := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, sameOrigin...)
	if p.status != 303 || p.header.Get("Location") != back(tok) {
		t.Fatalf("claim form with pricing off: %d Location %q", p.status, p.header.Get("Location"))
	}
	if p := claimReq(t, e, "GET", "/"+back(tok), nil); p.status != 403 {
		t.Errorf("where the form sent the invitee: %d\n%s", p.status, p.body)
	} else {
		mustContain(t, "the page after the form", p.body, says...)
	}
	j := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, "Sec-Fetch-Site", "same-origin", "Accept", "application/json")
	var out struct{ Location string }
	if j.status != 200 || json.Unmarshal([]byte(j.body), &out) != nil || out.Location != back(tok) {
		t.Errorf("claim from claim.js with pricing off: %d %s", j.status, j.body)
	}
	if n := requestCount(t, e); n != before {
		t.Errorf("with pricing off the page and the form recorded %d requests", n-before)
	}
	if st := seatStatus(t, e, seat); st != "pending" {
		t.Errorf("with pricing off the seat became %s", st)
	}

	// Back on: the same link is ready and claims.
	e.SetSeatPricing(ten.OrgID, true)
	if p := claimReq(t, e, "GET", pageOf(tok), nil); p.status != 200 || !strings.Contains(p.body, "Claim my seat") {
		t.Errorf("pricing back on: %d\n%s", p.status, p.body)
	}
	if p := claimReq(t, e, "POST", "/claim", url.Values{"token": {tok}}, sameOrigin...); p.status != 303 || p.header.Get("Location") != back(tok)+"&claimed=1" {
		t.Errorf("claim with pricing back on: %d %q", p.status, p.header.Get("Location"))
	}
	if st := seatStatus(t, e, seat); st != "claimed" {
		t.Errorf("after the claim with pricing back on the seat is %s", st)
	}
}
