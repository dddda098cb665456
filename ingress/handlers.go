package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/telemetry"
)

// readBody reads at most limit bytes within the body timeout; a longer
// body is 413, one that has not arrived in time is 408 (and the connection
// is closed, as its remains cannot be told from the next request).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if deadlineSet {
		_ = rc.SetReadDeadline(time.Time{})
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == nil:
		return body, nil
	case errors.As(err, &tooBig):
		return nil, events.Errorf(events.CodeTooLarge, "Request body exceeds %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		w.Header().Set("Connection", "close")
		return nil, events.Errorf(events.CodeTimeout, "The request body did not arrive within %s", s.cfg.BodyTimeout)
	default:
		return nil, events.Errorf(events.CodeInvalid, "Could not read the request body")
	}
}

func invalid(errs ...events.FieldError) *events.ValidationError {
	return &events.ValidationError{Detail: errs}
}

// idempotencyKey validates the Idempotency-Key header: 1 to 255 printable
// ASCII characters, or absent.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	k := vals[0]
	ok := len(vals) == 1 && len(k) >= 1 && len(k) <= 255
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] >= 0x20 && k[i] < 0x7f
	}
	if !ok {
		return "", invalid(events.FieldError{Loc: []any{"header", "Idempotency-Key"},
			Msg: "Idempotency-Key must be 1 to 255 printable ASCII characters", Type: "value_error"})
	}
	return k, nil
}

func wantsAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// caller is who an authenticated request acts for: a customer (or one of
// its members) through the customer portal, or an organization through the
// organization API.
type caller struct {
	storage.Owner
	memberID string // a member session's member
	bucket   string // keys its rate-limit buckets: the session's or the token's id
}

// request starts a request the caller makes.
func (c caller) request(op events.Op, now time.Time) events.Request {
	return events.Request{ID: newRequestID(), Op: op, CustomerID: c.CustomerID, MemberID: c.memberID,
		OrganizationID: c.OrganizationID, SubmittedAt: now}
}

// access is what an endpoint needs of its caller.
type access int

const (
	readAccess  access = iota // list a pool's seats
	pollAccess                // read the outcome of the caller's own request or batch
	writeAccess               // assign, batch, resend, revoke
)

// seatAPI is the Server serving one of its two seat APIs: the customer
// portal's (/v1/customer-portal/seats, customer and member sessions) and
// the organization API (/v1/customer-seats, organization access tokens).
// Every handler body is shared, so both have the same ledger,
// Idempotency-Keys, async answers, polling and batches; what differs is
// who may call, the assign body's schema and where the routes live.
type seatAPI struct {
	*Server
	prefix    string // its routes' root; 202 answers' Locations point under it
	seatParam string // the name of the seat id in paths, as Polar names it
	// authorize authenticates the caller and checks that it may do what
	// need says, answering the request when it may not.
	authorize    func(w http.ResponseWriter, r *http.Request, need access) (caller, bool)
	decodeAssign func([]byte) (events.SeatAssign, []events.FieldError)
}

func (s *Server) portalAPI() seatAPI {
	return seatAPI{Server: s, prefix: "/v1/customer-portal/seats", seatParam: "id", authorize: s.portalAuth,
		decodeAssign: events.DecodeSeatAssign}
}

func (s seatAPI) routes(m *http.ServeMux) {
	m.HandleFunc("POST "+s.prefix, s.assign)
	m.HandleFunc("GET "+s.prefix, s.list)
	m.HandleFunc("POST "+s.prefix+"/batch", s.batch)
	m.HandleFunc("GET "+s.prefix+"/batches/{id}", s.getBatch)
	m.HandleFunc("GET "+s.prefix+"/requests/{id}", s.getRequest)
	m.HandleFunc("POST "+s.prefix+"/{"+s.seatParam+"}/resend", s.resend)
	m.HandleFunc("DELETE "+s.prefix+"/{"+s.seatParam+"}", s.revoke)
}

// readAuth authenticates a read and takes it from the caller's read
// bucket (apart from its writes, so polling never starves writing).
func (s seatAPI) readAuth(w http.ResponseWriter, r *http.Request, need access) (caller, bool) {
	c, ok := s.authorize(w, r, need)
	if !ok || !s.allow(w, "read:"+c.bucket) {
		return c, false
	}
	return c, true
}

// writePrelude authenticates, rate-limits and reads the body of a write
// endpoint. It answers and returns ok=false on any failure.
func (s seatAPI) writePrelude(w http.ResponseWriter, r *http.Request, limit int64) (caller, string, []byte, bool) {
	c, ok := s.authorize(w, r, writeAccess)
	if !ok {
		return c, "", nil, false
	}
	if !s.allow(w, c.bucket) {
		return c, "", nil, false
	}
	key, err := idempotencyKey(r)
	if err != nil {
		s.fail(w, err)
		return c, "", nil, false
	}
	var body []byte
	if limit > 0 {
		if body, err = s.readBody(w, r, limit); err != nil {
			s.fail(w, err)
			return c, "", nil, false
		}
	}
	return c, key, body, true
}

func (s *Server) allow(w http.ResponseWriter, key string) bool {
	ok, retry := s.limiter.allow(key)
	if !ok {
		tooMany(w, retry)
	}
	return ok
}

func tooMany(w http.ResponseWriter, retry time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)+1))
	writeError(w, events.Errorf(events.CodeRateLimited, "Too many requests; retry later"))
}

// POST {prefix}
func (s seatAPI) assign(w http.ResponseWriter, r *http.Request) {
	c, key, body, ok := s.writePrelude(w, r, MaxBody)
	if !ok {
		return
	}
	a, errs := s.decodeAssign(body)
	if errs != nil {
		s.fail(w, invalid(errs...))
		return
	}
	req := c.request(events.OpAssign, time.Now().UTC())
	req.Assign = &a
	req.ReplyTo = s.inbox + "." + req.ID
	canonical, _ := events.Marshal(a)
	s.submit(w, r, submission{req: req, key: key, bodyHash: hashOf([]byte(events.OpAssign), canonical), async: wantsAsync(r), poll: s.prefix})
}

// POST {prefix}/{id}/resend
func (s seatAPI) resend(w http.ResponseWriter, r *http.Request) { s.seatOp(w, r, events.OpResend) }

// DELETE {prefix}/{id}
func (s seatAPI) revoke(w http.ResponseWriter, r *http.Request) { s.seatOp(w, r, events.OpRevoke) }

func (s seatAPI) seatOp(w http.ResponseWriter, r *http.Request, op events.Op) {
	c, key, _, ok := s.writePrelude(w, r, 0)
	if !ok {
		return
	}
	seatID, ok := events.ParseUUID(r.PathValue(s.seatParam))
	if !ok { // as Polar: a malformed id is a validation error, not a missing seat
		s.fail(w, invalid(events.FieldError{Loc: []any{"path", s.seatParam}, Msg: "Input should be a valid UUID", Type: "uuid_parsing"}))
		return
	}
	req := c.request(op, time.Now().UTC())
	req.SeatID = seatID
	req.ReplyTo = s.inbox + "." + req.ID
	s.submit(w, r, submission{req: req, key: key, bodyHash: hashOf([]byte(op), []byte(seatID)), async: wantsAsync(r), poll: s.prefix})
}

// POST /v1/customer-seats/claim: no session; the token is the credential.
func (s *Server) claim(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, "claim:"+clientIP(r)) {
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	body, err := s.readBody(w, r, MaxBody)
	if err != nil {
		s.fail(w, err)
		return
	}
	var in struct {
		Token *string `json:"invitation_token"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body"}, Msg: "JSON decode error or wrong type: " + err.Error(), Type: "json_invalid"}))
		return
	}
	if k, dup := events.TopLevelDuplicate(body); dup {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body", k}, Msg: fmt.Sprintf("Duplicate key %q", k), Type: "value_error"}))
		return
	}
	if in.Token == nil || *in.Token == "" || len(*in.Token) > 512 {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body", "invitation_token"}, Msg: "Field required: a non-empty string of at most 512 characters", Type: "missing"}))
		return
	}
	hash := secret.HashTokenHex(*in.Token)
	req := events.Request{ID: newRequestID(), Op: events.OpClaim, TokenHash: hash, SubmittedAt: time.Now().UTC()}
	req.ReplyTo = s.inbox + "." + req.ID
	// Never async: the claimant has no session to read a queued request
	// with, so the answer (and its session token) must come in this
	// response. Prefer: respond-async is a preference, and is ignored.
	s.submit(w, r, submission{req: req, key: key, bodyHash: hashOf([]byte(events.OpClaim), []byte(hash)), claim: true})
}

// GET /v1/customer-seats/claim/{token}: read-only, safe for mail scanners.
// Each lookup tells whether a token is live, so lookups share the client
// address's claim bucket.
func (s *Server) claimInfo(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, "claim:"+clientIP(r)) {
		return
	}
	info, err := s.cfg.DB.ClaimInfoByToken(r.Context(), r.PathValue("token"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, 200, info)
}

// GET {prefix}?subscription_id=... | order_id=...
func (s seatAPI) list(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readAuth(w, r, readAccess)
	if !ok {
		return
	}
	// As Polar: neither id is a bad request, both means the subscription,
	// and a malformed id is a validation error.
	q := r.URL.Query()
	field, value := "subscription_id", q.Get("subscription_id")
	if value == "" {
		field, value = "order_id", q.Get("order_id")
	}
	if value == "" {
		s.fail(w, events.Errorf(events.CodeBadRequest, "Either subscription_id or order_id must be provided"))
		return
	}
	id, ok := events.ParseUUID(value)
	if !ok {
		s.fail(w, invalid(events.FieldError{Loc: []any{"query", field}, Msg: "Input should be a valid UUID", Type: "uuid_parsing"}))
		return
	}
	var sub, ord string
	if field == "subscription_id" {
		sub = id
	} else {
		ord = id
	}
	list, err := s.cfg.DB.ListSeats(r.Context(), c.Owner, sub, ord)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"seats": list.Seats, "available_seats": list.AvailableSeats, "total_seats": list.TotalSeats})
}

// GET /v1/customer-portal/seats/subscriptions?page=&limit=: the
// subscriptions in which the caller holds a claimed seat, as Polar's
// ListResource[CustomerSubscription]. Portal only: an organization holds
// no seats.
func (s seatAPI) listClaimedSubscriptions(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readAuth(w, r, readAccess)
	if !ok {
		return
	}
	q := r.URL.Query()
	var errs []events.FieldError
	page, limit := positiveParam(q, "page", 1, &errs), positiveParam(q, "limit", 10, &errs)
	if errs != nil {
		s.fail(w, invalid(errs...))
		return
	}
	limit = min(limit, storage.MaxPageLimit) // as Polar: a larger limit is clamped, not refused
	items, total, err := s.cfg.DB.ClaimedSubscriptions(r.Context(), c.CustomerID, c.memberID, page, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"items": items,
		"pagination": map[string]int64{"total_count": total, "max_page": (total + limit - 1) / limit}})
}

// positiveParam reads an integer query parameter that must be above 0, as
// Polar's pagination validates it; absent, it is def. A number too large to
// hold is the largest that can be held: it names a page past the end.
func positiveParam(q url.Values, name string, def int64, errs *[]events.FieldError) int64 {
	if !q.Has(name) {
		return def
	}
	v, err := strconv.ParseInt(q.Get(name), 10, 64)
	if errors.Is(err, strconv.ErrRange) && v > 0 {
		return v
	}
	loc := []any{"query", name}
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		*errs = append(*errs, events.FieldError{Loc: loc, Msg: "Input should be a valid integer, unable to parse string as an integer", Type: "int_parsing"})
	case v <= 0:
		*errs = append(*errs, events.FieldError{Loc: loc, Msg: "Input should be greater than 0", Type: "greater_than"})
	}
	return v
}

// requestView is the public shape of a request's state.
type requestView struct {
	RequestID string                `json:"request_id"`
	Index     *int                  `json:"index,omitempty"`
	Status    storage.RequestStatus `json:"status"`
	Seat      *events.CustomerSeat  `json:"seat"`
	Error     *requestError         `json:"error"`
}

type requestError struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

func viewOf(rec storage.Record) requestView {
	v := requestView{RequestID: rec.ID, Status: rec.Status}
	if res := rec.Result; res != nil {
		if res.OK() {
			v.Seat = res.Seat
		} else {
			a := answerTo(res.Code)
			v.Error = &requestError{Status: a.status, Error: a.name, Detail: res.Detail}
		}
	}
	return v
}

// GET {prefix}/requests/{id}
func (s seatAPI) getRequest(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readAuth(w, r, pollAccess)
	if !ok {
		return
	}
	rec, err := s.cfg.DB.Request(r.Context(), strings.ToLower(r.PathValue("id")), c.Ledger())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, 200, viewOf(rec))
}

// POST {prefix}/batch
func (s seatAPI) batch(w http.ResponseWriter, r *http.Request) {
	c, key, body, ok := s.writePrelude(w, r, MaxBatchBody)
	if !ok {
		return
	}
	var in struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body"}, Msg: "JSON decode error or wrong type: " + err.Error(), Type: "json_invalid"}))
		return
	}
	if k, dup := events.TopLevelDuplicate(body); dup {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body", k}, Msg: fmt.Sprintf("Duplicate key %q", k), Type: "value_error"}))
		return
	}
	if len(in.Items) < 1 || len(in.Items) > MaxBatchItems {
		s.fail(w, invalid(events.FieldError{Loc: []any{"body", "items"}, Msg: "items must hold 1 to 1000 seat assignments", Type: "value_error"}))
		return
	}
	batchID := newRequestID()
	telemetry.SetRequestID(r.Context(), batchID)
	now := time.Now().UTC()
	reqs := make([]events.Request, len(in.Items))
	var errs []events.FieldError
	canon := make([][]byte, 0, len(in.Items)+1)
	canon = append(canon, []byte("batch"))
	for i, raw := range in.Items {
		a, fe := s.decodeAssign(raw)
		if fe != nil {
			errs = append(errs, events.WithPrefix([]any{"body", "items", i}, stripBody(fe))...)
			continue
		}
		reqs[i] = c.request(events.OpAssign, now)
		reqs[i].Assign, reqs[i].BatchID, reqs[i].BatchIndex = &a, batchID, i
		canonical, _ := events.Marshal(a)
		canon = append(canon, canonical)
	}
	if errs != nil {
		s.fail(w, invalid(errs...)) // nothing of an invalid batch is published
		return
	}
	b, err := s.cfg.DB.SubmitBatch(r.Context(), batchID, c.Ledger(), key, hashOf(canon...), reqs)
	if err != nil {
		s.fail(w, err)
		return
	}
	if b.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		// The batch is in the ledger; a publish that fails here is redone
		// by the worker's requeue sweeper, so the batch is accepted either
		// way. An item that cannot be encoded at all (validation should
		// make that impossible) ends failed with its reason, and the items
		// after it are published all the same.
		bad, err := PublishAll(r.Context(), s.cfg.JS, reqs)
		for _, u := range bad {
			s.log.Error("batch item cannot be queued", "request_id", u.Request.ID, "err", u.Err)
			if _, ferr := s.cfg.DB.Fail(context.WithoutCancel(r.Context()), u.Request, events.CodeInvalid,
				"The request could not be queued: "+u.Err.Error()); ferr != nil {
				s.log.Warn("recording unqueueable item", "request_id", u.Request.ID, "err", ferr)
			}
		}
		if err != nil {
			s.log.Warn("batch publish incomplete; the requeuer will finish it", "batch_id", batchID, "err", err)
		}
	}
	w.Header().Set("Location", s.prefix+"/batches/"+b.ID)
	writeJSON(w, http.StatusAccepted, map[string]any{"batch_id": b.ID, "status": "queued", "size": len(reqs)})
}

// stripBody drops the leading "body" of a loc, so batch items read
// ["body", "items", i, "email"].
func stripBody(errs []events.FieldError) []events.FieldError {
	out := make([]events.FieldError, len(errs))
	for i, e := range errs {
		if len(e.Loc) > 0 && e.Loc[0] == "body" {
			e.Loc = e.Loc[1:]
		}
		out[i] = e
	}
	return out
}

// GET {prefix}/batches/{id}
func (s seatAPI) getBatch(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readAuth(w, r, pollAccess)
	if !ok {
		return
	}
	b, err := s.cfg.DB.Batch(r.Context(), strings.ToLower(r.PathValue("id")), c.Ledger())
	if err != nil {
		s.fail(w, err)
		return
	}
	counts := map[storage.RequestStatus]int{storage.RequestQueued: 0, storage.RequestSucceeded: 0, storage.RequestFailed: 0}
	items := make([]requestView, len(b.Items))
	for i, rec := range b.Items {
		counts[rec.Status]++
		items[i] = viewOf(rec)
		idx := rec.BatchIndex
		items[i].Index = &idx
	}
	status := "completed"
	if counts[storage.RequestQueued] > 0 {
		status = "queued"
	}
	writeJSON(w, 200, map[string]any{"batch_id": b.ID, "status": status, "size": b.Size, "counts": counts, "items": items})
}

func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}
