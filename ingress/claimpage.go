package ingress

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
)

// The claim page: what an invitation email's button opens.
//
//   - GET /claim?token=T shows the invitation in whatever state it is in
//     (ready, claimed, expired, revoked, replaced, unknown, or not
//     claimable because the organization has seat-based pricing off) and
//     changes nothing, so a mail scanner that follows the link uses
//     nothing up.
//   - POST /claim (form field token=T) claims it, through the queue and the
//     worker exactly like POST /v1/customer-seats/claim, then redirects
//     (303): to the organization's claim return URL with the new customer
//     session token in the fragment, or back to the page, which then says
//     what the seat gives and how to sign in. With Accept: application/json
//     (claim.js) the answer is {"location": ...} or {"message": ...}
//     instead, so the script can navigate or show the problem in place.
//
// Cross-site request forgery: the form carries the invitation token, the
// secret itself, so a forging site must already hold the token, and with
// it could claim directly without any victim. What remains is a site
// making a visitor's browser claim the forger's own invitation (landing
// the visitor, signed in, in the forger's account); that is refused by
// checking Sec-Fetch-Site, or Origin against Host on browsers too old to
// send it (http.CrossOriginProtection). There is no cookie, so no ambient
// credential to abuse and nothing for SameSite to protect. The page cannot
// be framed (frame-ancestors 'none', X-Frame-Options DENY), so the button
// cannot be clickjacked.

// Defaults for the per-address limit of claim page lookups.
const (
	DefaultClaimPageRate  = 2  // lookups per second, per client address
	DefaultClaimPageBurst = 30 // a person reloading, a shared office NAT
)

// claimedRecently is how long after a claim the page still says "you're
// in" (the redirect after a claim, and reloads) instead of "already
// claimed".
const claimedRecently = 15 * time.Minute

const maxFormBody = 4 << 10

// securityHeaders are sent with every HTML page. formAction lists the
// origins the page's form may post to or be redirected to ('self' always).
func securityHeaders(w http.ResponseWriter, formAction ...string) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action "+strings.Join(append([]string{"'self'"}, formAction...), " ")+
		"; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// renderPage answers with a claim page.
func (s *Server) renderPage(w http.ResponseWriter, status int, p invite.Page, formAction ...string) {
	securityHeaders(w, formAction...)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	if err := s.tmpl.RenderPage(&b, p); err != nil {
		s.log.Error("claim page", "state", p.State, "err", err)
		status, p = http.StatusInternalServerError, invite.Page{State: invite.Failed}
		b.Reset()
		if err := s.tmpl.RenderPage(&b, p); err != nil {
			http.Error(w, "Internal server error", 500)
			return
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// pageFor turns what storage knows about a link into a page and a status.
func pageFor(v storage.InvitationView, token string) (invite.Page, int) {
	p := invite.Page{Invitation: invite.Invitation{Organization: v.Organization, Product: v.Product,
		Inviter: v.InviterEmail, Invitee: v.InviteeEmail, ExpiresAt: v.ExpiresAt, ClaimedAt: v.ClaimedAt}}
	switch v.State {
	case storage.InvitationReady:
		if !v.Claimable() {
			// As the claim API (403 FeatureNotEnabled): the link is live,
			// but cannot be claimed until pricing is back on.
			p.State = invite.SeatPricingOff
			return p, http.StatusForbidden
		}
		p.State, p.Token = invite.Ready, token
		return p, http.StatusOK
	case storage.InvitationClaimed:
		p.State = invite.AlreadyClaimed
		return p, http.StatusOK
	case storage.InvitationExpired:
		p.State = invite.Expired
		return p, http.StatusGone
	case storage.InvitationRevoked:
		p.State = invite.Revoked
		return p, http.StatusGone
	case storage.InvitationReplaced:
		p.State = invite.Replaced
		return p, http.StatusGone
	}
	return invite.Page{State: invite.Unknown}, http.StatusNotFound
}

func (s *Server) allowPage(w http.ResponseWriter, r *http.Request, l *limiter, key string) bool {
	ok, retry := l.allow(key + clientIP(r))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)+1))
		s.answer(w, r, http.StatusTooManyRequests, invite.Page{State: invite.RateLimited},
			"Too many attempts from your network. Wait a minute, then try again.")
	}
	return ok
}

// GET /claim?token=...
func (s *Server) claimPage(w http.ResponseWriter, r *http.Request) {
	if !s.allowPage(w, r, s.pageLimiter, "claim-page:") {
		return
	}
	token := r.URL.Query().Get("token")
	if token == "" || len(token) > 512 {
		s.renderPage(w, http.StatusNotFound, invite.Page{State: invite.Unknown})
		return
	}
	v, err := s.cfg.DB.Invitation(r.Context(), token)
	if err != nil {
		s.log.Error("claim page lookup", "err", err)
		s.renderPage(w, http.StatusInternalServerError, invite.Page{State: invite.Failed})
		return
	}
	p, status := pageFor(v, token)
	if r.URL.Query().Get("claimed") == "1" {
		// Where the claim form sends a claimant when there is no return URL.
		switch {
		case v.State == storage.InvitationClaimed && v.ClaimedAt != nil && time.Since(*v.ClaimedAt) < claimedRecently:
			p.State, p.ReturnURL = invite.ClaimedNow, v.ClaimReturnURL
		case p.State == invite.Ready: // the claim is still in the queue
			p.State, p.Token, status = invite.Pending, "", http.StatusAccepted
		}
	}
	var formAction []string
	if p.State == invite.Ready {
		if o := originOf(v.ClaimReturnURL); o != "" {
			formAction = append(formAction, o) // the form's redirect goes there
		}
	}
	s.renderPage(w, status, p, formAction...)
}

// POST /claim
func (s *Server) claimForm(w http.ResponseWriter, r *http.Request) {
	if err := s.cop.Check(r); err != nil {
		s.answer(w, r, http.StatusForbidden, invite.Page{State: invite.CrossSite},
			"This claim did not come from the invitation page, so nothing was changed.")
		return
	}
	// The same per-address limit as POST /v1/customer-seats/claim: both
	// claim, so they share one bucket.
	if !s.allowPage(w, r, s.limiter, "claim:") {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		s.answer(w, r, http.StatusBadRequest, invite.Page{State: invite.Unknown}, "The claim form was incomplete. Open the link in your invitation email again.")
		return
	}
	token := r.PostForm.Get("token")
	if token == "" || len(token) > 512 {
		s.answer(w, r, http.StatusNotFound, invite.Page{State: invite.Unknown}, "This invitation link is not recognised.")
		return
	}
	// Relative, so it works behind a proxy serving seatd under a prefix.
	back := "claim?" + url.Values{"token": {token}}.Encode()
	v, err := s.cfg.DB.Invitation(r.Context(), token)
	if err != nil {
		s.log.Error("claim form lookup", "err", err)
		s.answer(w, r, http.StatusInternalServerError, invite.Page{State: invite.Failed}, "Something went wrong on our side. Please try again in a minute.")
		return
	}
	if v.State == storage.InvitationClaimed && v.ClaimedAt != nil && time.Since(*v.ClaimedAt) < claimedRecently {
		// Most likely this visitor's own double click: the first POST
		// claimed, and the browser shows the answer to the second. Say
		// "you're in" rather than "already claimed"; the session token is
		// not handed out twice.
		s.redirect(w, r, back+"&claimed=1")
		return
	}
	if !v.Claimable() {
		s.redirect(w, r, back) // the page says what became of the link
		return
	}
	res, err := s.claimThroughQueue(r.Context(), token)
	switch {
	case errors.Is(err, errStillQueued):
		s.redirect(w, r, back+"&claimed=1") // says "finishing", then "you're in"
		return
	case err != nil:
		s.log.Warn("claim form", "err", err)
		s.answer(w, r, http.StatusServiceUnavailable, invite.Page{State: invite.Failed}, "Something went wrong on our side. Nothing was changed; please try again in a minute.")
		return
	case res.Code == events.CodeInvalidToken:
		// Lost a race (most likely to this visitor's own double click, whose
		// answer the browser shows) or expired meanwhile: with claimed=1
		// the page says "you're in" for a fresh claim, else what happened.
		s.redirect(w, r, back+"&claimed=1")
		return
	case !res.OK():
		// E.g. seat-based pricing switched off since the lookup: the page
		// says so.
		s.log.Warn("claim form refused", "code", res.Code)
		s.redirect(w, r, back)
		return
	}
	if v.ClaimReturnURL == "" {
		s.redirect(w, r, back+"&claimed=1")
		return
	}
	// The session token goes in the fragment: browsers never send a
	// fragment to a server or in a Referer, and it is not logged here.
	s.redirect(w, r, v.ClaimReturnURL+"#customer_session_token="+url.QueryEscape(s.cfg.Keys.SessionToken(res.RequestID)))
}

// wantsJSON: claim.js asks for JSON so it can navigate itself.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// redirect sends the browser to location: 303 for the form, or
// {"location"} for claim.js.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, location string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]string{"location": location})
		return
	}
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

// answer shows a problem: a page for the form, {"message"} for claim.js.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, p invite.Page, message string) {
	if r.Method == http.MethodPost && wantsJSON(r) {
		writeJSON(w, status, map[string]string{"message": message})
		return
	}
	s.renderPage(w, status, p)
}

var errStillQueued = errors.New("claim still queued")

// claimThroughQueue submits a claim like POST /v1/customer-seats/claim
// (recorded in the ledger, published, applied by the worker) and waits for
// the worker's answer. errStillQueued means the wait ran out: the claim
// goes on and the worker will apply it.
func (s *Server) claimThroughQueue(ctx context.Context, token string) (events.Result, error) {
	hash := secret.HashTokenHex(token)
	req := events.Request{ID: newRequestID(), Op: events.OpClaim, TokenHash: hash, SubmittedAt: time.Now().UTC()}
	req.ReplyTo = s.inbox + "." + req.ID
	if _, err := s.cfg.DB.Submit(ctx, storage.Submission{Request: req, BodyHash: hashOf([]byte(events.OpClaim), []byte(hash))}); err != nil {
		return events.Result{}, err
	}
	ch, cancel := s.wait(req.ID)
	defer cancel()
	if err := s.publish(ctx, req); err != nil {
		if _, ferr := s.cfg.DB.Fail(context.WithoutCancel(ctx), req, events.CodeUnavailable, "The request could not be queued"); ferr != nil {
			s.log.Warn("recording publish failure", "request_id", req.ID, "err", ferr)
		}
		return events.Result{}, err
	}
	timer := time.NewTimer(s.cfg.SyncTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-timer.C:
		return events.Result{}, errStillQueued
	case <-ctx.Done():
		return events.Result{}, ctx.Err()
	}
}

// GET /claim/assets/{file}: the page's stylesheet and script. Their URLs
// carry a hash of their content, so they may be cached.
func (s *Server) claimAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := s.tmpl.Asset(r.PathValue("file"))
	if !ok {
		writeError(w, events.Errorf(events.CodeNotFound, "Not found"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", `"`+a.Version+`"`)
	if r.Header.Get("If-None-Match") == `"`+a.Version+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(a.Body)
}

// originOf is scheme://host of an absolute URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
