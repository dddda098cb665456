package invite

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"
)

//go:embed templates
var embedded embed.FS

// Files are the names a template directory may override.
var Files = []string{"email.txt", "email.html", "page.html", "style.css", "claim.js"}

// AssetPath is where the ingress serves style.css and claim.js. The page
// links them relative to itself (the page is .../claim), so seatd works
// behind a proxy that serves it under a path prefix.
const AssetPath = "/claim/assets/"

const relativeAssets = "claim/assets/"

// Templates is a parsed set of templates and assets. It is safe for
// concurrent use.
type Templates struct {
	text   *texttemplate.Template // email.txt: "subject", "text"
	email  *htmltemplate.Template // email.html: "email"
	page   *htmltemplate.Template // page.html: "page"
	assets map[string]Asset
	css    string
}

// Asset is a static file of the claim page.
type Asset struct {
	Name        string
	ContentType string
	Body        []byte
	Version     string // a hash of Body, for cache-busting URLs
}

var (
	defaultOnce sync.Once
	defaultSet  *Templates
)

// Default is the embedded set. It panics if the embedded templates are
// broken, which a test catches before anyone ships them.
func Default() *Templates {
	defaultOnce.Do(func() {
		t, err := Load("")
		if err != nil {
			panic(err)
		}
		defaultSet = t
	})
	return defaultSet
}

// Load parses the embedded templates, each replaced by the file of the
// same name in dir when dir is not empty and has one. A file in dir that
// is not one of Files is refused (a misspelt name would otherwise be
// silently ignored).
func Load(dir string) (*Templates, error) {
	read := func(name string) ([]byte, error) { return embedded.ReadFile("templates/" + name) }
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("templates directory: %w", err)
		}
		known := map[string]bool{}
		for _, f := range Files {
			known[f] = true
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if !known[e.Name()] || e.IsDir() {
				return nil, fmt.Errorf("templates directory %s: unknown file %q (it may hold %s)", dir, e.Name(), strings.Join(Files, ", "))
			}
		}
		read = func(name string) ([]byte, error) {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				return embedded.ReadFile("templates/" + name)
			}
			return b, err
		}
	}
	src := map[string][]byte{}
	for _, f := range Files {
		b, err := read(f)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", f, err)
		}
		src[f] = b
	}
	t := &Templates{assets: map[string]Asset{}, css: string(src["style.css"])}
	for name, ctype := range map[string]string{"style.css": "text/css; charset=utf-8", "claim.js": "text/javascript; charset=utf-8"} {
		sum := sha256.Sum256(src[name])
		t.assets[name] = Asset{Name: name, ContentType: ctype, Body: src[name], Version: hex.EncodeToString(sum[:6])}
	}
	var err error
	if t.text, err = texttemplate.New("email.txt").Funcs(texttemplate.FuncMap(funcs)).Parse(string(src["email.txt"])); err != nil {
		return nil, fmt.Errorf("template %w", err)
	}
	if t.email, err = htmltemplate.New("email.html").Funcs(htmltemplate.FuncMap(funcs)).Parse(string(src["email.html"])); err != nil {
		return nil, fmt.Errorf("template %w", err)
	}
	if t.page, err = htmltemplate.New("page.html").Funcs(htmltemplate.FuncMap(funcs)).Parse(string(src["page.html"])); err != nil {
		return nil, fmt.Errorf("template %w", err)
	}
	for _, need := range []struct {
		file string
		has  func(string) bool
		name string
	}{
		{"email.txt", func(n string) bool { return t.text.Lookup(n) != nil }, "subject"},
		{"email.txt", func(n string) bool { return t.text.Lookup(n) != nil }, "text"},
		{"email.html", func(n string) bool { return t.email.Lookup(n) != nil }, "email"},
		{"page.html", func(n string) bool { return t.page.Lookup(n) != nil }, "page"},
	} {
		if !need.has(need.name) {
			return nil, fmt.Errorf("template %s must define %q", need.file, need.name)
		}
	}
	// Render every state once with sample data, so a template that parses
	// but fails at run time (a misspelt field) is found now.
	if err := t.selfTest(); err != nil {
		return nil, err
	}
	return t, nil
}

// EmbeddedFile returns the embedded version of one of Files: the starting
// point of an override.
func EmbeddedFile(name string) ([]byte, error) {
	return embedded.ReadFile("templates/" + name)
}

// Asset returns a static file by name (style.css, claim.js).
func (t *Templates) Asset(name string) (Asset, bool) {
	a, ok := t.assets[name]
	return a, ok
}

var funcs = map[string]any{
	// date formats a time the same way in the email and on the page.
	"date": func(t time.Time) string { return t.UTC().Format("Mon, 02 Jan 2006 15:04 MST") },
	// iso is a time for a <time datetime> attribute.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// until says how long is left: "in 24 hours".
	"until": func(t, now time.Time) string { return ExpiresIn(t.Sub(now)) },
}

// ExpiresIn words a remaining lifetime: "in 24 hours", "in 1 hour", "in
// less than an hour", "already expired".
func ExpiresIn(d time.Duration) string {
	switch h := int(d.Round(time.Hour) / time.Hour); {
	case d <= 0:
		return "already expired"
	case h < 1:
		return "in less than an hour"
	case h == 1:
		return "in 1 hour"
	default:
		return fmt.Sprintf("in %d hours", h)
	}
}

// Invitation is what the email and the page say about one invitation.
// Empty names fall back to wording in the templates ("Your team").
type Invitation struct {
	Organization string
	Product      string
	Inviter      string // the inviter's address; empty when unknown
	Invitee      string // the invitee's address
	ExpiresAt    time.Time
	ClaimedAt    *time.Time
}

// Email is the data of an invitation email.
type Email struct {
	Invitation
	ClaimURL string // carries the token: never log it
	Now      time.Time
}

// RenderedEmail is an invitation email's subject and bodies.
type RenderedEmail struct {
	Subject, Text, HTML string
}

// RenderEmail renders the invitation email.
func (t *Templates) RenderEmail(e Email) (RenderedEmail, error) {
	var out RenderedEmail
	var b strings.Builder
	if err := t.text.ExecuteTemplate(&b, "subject", e); err != nil {
		return out, fmt.Errorf("email subject: %w", err)
	}
	out.Subject = oneLine(b.String())
	b.Reset()
	if err := t.text.ExecuteTemplate(&b, "text", e); err != nil {
		return out, fmt.Errorf("email text: %w", err)
	}
	out.Text = b.String()
	b.Reset()
	data := struct {
		Email
		Subject string
		CSS     htmltemplate.CSS // the page's style.css, inlined: email clients fetch nothing
	}{e, out.Subject, htmltemplate.CSS(t.css)}
	if err := t.email.ExecuteTemplate(&b, "email", data); err != nil {
		return out, fmt.Errorf("email html: %w", err)
	}
	out.HTML = b.String()
	return out, nil
}

// State names a claim page. The first eight are the states of a link; the
// rest answer a claim that could not be made.
type State string

const (
	Ready          State = "ready"           // the invitation can be claimed
	ClaimedNow     State = "claimed"         // this visitor just claimed it (no return URL)
	AlreadyClaimed State = "already_claimed" // claimed before
	Expired        State = "expired"
	Revoked        State = "revoked"
	Replaced       State = "replaced" // a newer invitation superseded it
	Unknown        State = "unknown"  // no such invitation
	// SeatPricingOff: a live invitation of an organization that has
	// switched seat-based pricing off, so it cannot be claimed now (the
	// claim API answers 403 FeatureNotEnabled); it can once pricing is on.
	SeatPricingOff State = "seat_pricing_off"
	RateLimited    State = "rate_limited"
	CrossSite      State = "cross_site" // a claim posted from another site
	Pending        State = "pending"    // the claim was accepted and is still being applied
	Failed         State = "failed"     // something broke on our side
)

// States are every page state, in the order the screenshots show them.
var States = []State{Ready, ClaimedNow, AlreadyClaimed, Expired, Revoked, Replaced, Unknown, SeatPricingOff, RateLimited, CrossSite, Pending, Failed}

// Page is the data of a claim page.
type Page struct {
	State State
	Invitation
	Token string // the invitation token, for the claim form (Ready only)
	// ReturnURL is the organization's claim return URL, if any: the
	// claimed page links to it (without a session token).
	ReturnURL string
	Now       time.Time
	// FormAction is where the claim form posts; default "claim", relative
	// to the page.
	FormAction string
	// CSS and Script are the asset URLs.
	CSS, Script string
}

// RenderPage writes a claim page.
func (t *Templates) RenderPage(w io.Writer, p Page) error {
	p.CSS = relativeAssets + "style.css?v=" + t.assets["style.css"].Version
	p.Script = relativeAssets + "claim.js?v=" + t.assets["claim.js"].Version
	if p.FormAction == "" {
		p.FormAction = "claim" // relative, like the assets
	}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	// Render into a buffer so a template error never leaves half a page.
	var b bytes.Buffer
	if err := t.page.ExecuteTemplate(&b, "page", p); err != nil {
		return fmt.Errorf("claim page %s: %w", p.State, err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func (t *Templates) selfTest() error {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	inv := Invitation{Organization: "O", Product: "P", Inviter: "a@example.test", Invitee: "b@example.test", ExpiresAt: now.Add(time.Hour), ClaimedAt: &now}
	if _, err := t.RenderEmail(Email{Invitation: inv, ClaimURL: "https://example.test/claim?token=t", Now: now}); err != nil {
		return err
	}
	states := append([]State(nil), States...)
	sort.Slice(states, func(i, j int) bool { return states[i] < states[j] })
	for _, s := range states {
		for _, in := range []Invitation{inv, {}} {
			if err := t.RenderPage(io.Discard, Page{State: s, Invitation: in, Token: "t", Now: now}); err != nil {
				return err
			}
		}
	}
	return nil
}

// oneLine flattens a rendered subject to one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
