package ingress

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/telemetry"
)

// Limits of the HTTP edge.
const (
	MaxBody       = 64 << 10 // one seat request
	MaxBatchBody  = 4 << 20  // a batch of up to MaxBatchItems
	MaxBatchItems = 1000
)

// Config configures the ingress.
type Config struct {
	DB          *storage.DB
	NC          *nats.Conn
	JS          jetstream.JetStream
	Keys        secret.Keys
	Log         *slog.Logger
	SyncTimeout time.Duration // how long a sync call waits for the worker; default 10s
	RateLimit   float64       // requests per second per token (writes and reads apart) and per client address for claims; 0 disables
	RateBurst   int
	// AuthFailLimit is how many requests with a missing, unknown or
	// expired bearer token one client address may send per second (burst
	// AuthFailBurst) before it is answered 429 without a lookup; default
	// 2/s, burst 30; negative disables.
	AuthFailLimit float64
	AuthFailBurst int
	// BodyTimeout bounds reading a request body: a body that trickles in
	// is answered 408. Default 10s.
	BodyTimeout time.Duration
	// Templates render the claim page (SEATD_TEMPLATES); nil: the embedded ones.
	Templates *invite.Templates
	// ClaimPageRate and ClaimPageBurst limit claim page lookups per client
	// address; 0 means DefaultClaimPageRate/Burst, negative disables.
	ClaimPageRate  float64
	ClaimPageBurst int
}

// Server is the HTTP ingress.
type Server struct {
	cfg      Config
	log      *slog.Logger
	inbox    string
	sub      *nats.Subscription
	mu       sync.Mutex
	waiters  map[string]chan events.Result
	limiter  *limiter
	authFail *limiter // per client address, charged by requests that fail authentication
	mux      *http.ServeMux
	handler  http.Handler // mux with metrics, tracing and the access log

	// ledger records requests as queued, many callers per statement.
	ledger    *storage.SubmitGroup
	sessions  *tokenCache[storage.Session]
	orgTokens *tokenCache[storage.OrgToken]
	// Publishes that the caller does not wait for: accepted async requests,
	// and sync ones whose publish failed. At most cap(publishing) at once;
	// past that, and after Close, the requeuer publishes from the ledger.
	pending    sync.WaitGroup
	publishing chan struct{}
	bg         context.Context // ends at Close
	stopBG     context.CancelFunc

	tmpl        *invite.Templates
	pageLimiter *limiter
	cop         *http.CrossOriginProtection
}

// New subscribes to this ingress's reply inbox and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 10 * time.Second
	}
	if cfg.AuthFailLimit == 0 {
		cfg.AuthFailLimit, cfg.AuthFailBurst = 2, 30
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("role", "ingress"), inbox: nats.NewInbox(),
		waiters: map[string]chan events.Result{}, limiter: newLimiter(cfg.RateLimit, cfg.RateBurst),
		authFail: newLimiter(cfg.AuthFailLimit, cfg.AuthFailBurst)}
	s.tmpl = cfg.Templates
	if s.tmpl == nil {
		s.tmpl = invite.Default()
	}
	if cfg.ClaimPageRate == 0 {
		cfg.ClaimPageRate, cfg.ClaimPageBurst = DefaultClaimPageRate, DefaultClaimPageBurst
	}
	s.pageLimiter = newLimiter(max(cfg.ClaimPageRate, 0), cfg.ClaimPageBurst)
	s.cop = http.NewCrossOriginProtection()
	sub, err := cfg.NC.Subscribe(s.inbox+".*", s.onResult)
	if err != nil {
		return nil, fmt.Errorf("ingress: subscribe: %w", err)
	}
	s.sub = sub
	s.ledger = cfg.DB.NewSubmitGroup(0)
	s.sessions = newTokenCache(cfg.DB.Authenticate, func(sess storage.Session, now time.Time) bool { return now.Before(sess.ExpiresAt) })
	s.orgTokens = newTokenCache(func(ctx context.Context, token string) (storage.OrgToken, error) {
		return cfg.DB.AuthenticateOrgToken(ctx, cfg.Keys, token)
	}, storage.OrgToken.LiveAt)
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.publishing = make(chan struct{}, 10000)
	s.routes()
	return s, nil
}

// Close stops receiving results and recording requests; call it after the
// HTTP server has shut down. Accepted requests reach the stream before it
// returns.
func (s *Server) Close() {
	_ = s.sub.Unsubscribe()
	s.ledger.Close()
	done := make(chan struct{})
	go func() { s.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		// JetStream is away: stop trying; the requeuer has them.
		s.stopBG()
		<-done
	}
	s.stopBG()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	portal := s.portalAPI()
	portal.routes(m)
	m.HandleFunc("GET /v1/customer-portal/seats/subscriptions", portal.listClaimedSubscriptions)
	s.orgAPI().routes(m)
	m.HandleFunc("GET /v1/customer-seats/claim/{token}", s.claimInfo)
	m.HandleFunc("POST /v1/customer-seats/claim", s.claim)
	m.HandleFunc("GET /claim", s.claimPage)
	m.HandleFunc("POST /claim", s.claimForm)
	m.HandleFunc("GET /claim/assets/{file}", s.claimAsset)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	m.HandleFunc("GET /readyz", s.ready)
	m.Handle("GET /metrics", telemetry.Handler())
	m.HandleFunc("/", s.notFound)
	s.mux, s.handler = m, telemetry.HTTP(m, s.log)
}

// notFound answers a request no route takes: 405 with Allow when the path
// is known under other methods, 404 otherwise. Under /v1/, the API, the
// caller is authenticated first, as Polar's API does: without a valid
// token it is 401, so a client (Polar's SDK among them) never mistakes a
// bad token for a missing resource.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, method)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, events.Errorf(events.CodeMethodNotAllowed, "%s is not allowed here; allowed: %s", r.Method, strings.Join(allow, ", ")))
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		if _, ok := authenticate(s, w, r, s.anyToken); !ok {
			return
		}
	}
	writeError(w, events.Errorf(events.CodeNotFound, "Not found"))
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.DB.Pool.Ping(ctx); err != nil {
		writeJSON(w, 503, map[string]string{"status": "database unavailable"})
		return
	}
	if !s.cfg.NC.IsConnected() {
		writeJSON(w, 503, map[string]string{"status": "nats unavailable"})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ok"})
}

func (s *Server) onResult(m *nats.Msg) {
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	var res events.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return
	}
	s.mu.Lock()
	ch := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- res // buffered
	}
}

func (s *Server) wait(id string) (<-chan events.Result, func()) {
	ch := make(chan events.Result, 1)
	s.mu.Lock()
	s.waiters[id] = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.waiters, id)
		s.mu.Unlock()
	}
}

// bearerToken reads "Authorization: Bearer TOKEN"; the scheme is
// case-insensitive (RFC 9110 §11.1).
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// errNoAccess is Polar's answer to a member without a billing role.
var errNoAccess = events.Errorf(events.CodeForbidden, "Only owners and billing managers can access billing features.")

// authenticate identifies a request's caller by its bearer token with
// lookup, and answers it (returning false) when it cannot: 401 without a
// token or with one lookup does not know (unknown, expired, revoked, or of
// a kind the endpoint does not take), 429 for a client address that keeps
// sending bad tokens (before any lookup). A missing token, and one lookup
// refuses, charge that address. It is the one place a bearer token becomes
// a caller, for every endpoint that takes one and for unknown API paths.
func authenticate[T any](s *Server, w http.ResponseWriter, r *http.Request, lookup func(context.Context, string) (T, error)) (T, bool) {
	var none T
	ip := clientIP(r)
	if blocked, retry := s.authFail.blocked(ip); blocked {
		tooMany(w, retry)
		return none, false
	}
	token := bearerToken(r)
	if token == "" {
		s.authFail.charge(ip)
		s.fail(w, events.Errorf(events.CodeUnauthorized, "Unauthorized"))
		return none, false
	}
	v, err := lookup(r.Context(), token)
	if err != nil {
		if events.ErrorCode(err) == events.CodeUnauthorized {
			s.authFail.charge(ip)
		}
		s.fail(w, err)
		return none, false
	}
	return v, true
}

// anyToken looks up a bearer token of either kind (an organization access
// token or a customer or member session), for paths that take no
// particular caller: an unknown API path answers 401 or 404 by it.
func (s *Server) anyToken(ctx context.Context, token string) (struct{}, error) {
	var err error
	if strings.HasPrefix(token, storage.OrgTokenPrefix) {
		_, err = s.orgTokens.authenticate(ctx, token)
	} else {
		_, err = s.sessions.authenticate(ctx, token)
	}
	return struct{}{}, err
}

// auth authenticates a customer or member session and checks scope and,
// for writes, role: every member may read, only a customer or an owner or
// billing manager member may write (Polar's CustomerPortalUnionRead and
// CustomerPortalUnionBillingWrite).
func (s *Server) auth(w http.ResponseWriter, r *http.Request, scope string, manage bool) (storage.Session, bool) {
	sess, ok := authenticate(s, w, r, s.sessions.authenticate)
	if !ok {
		return storage.Session{}, false
	}
	if !sess.HasScope(scope) {
		insufficientScope(w, []string{scope})
		return storage.Session{}, false
	}
	if manage && !sess.CanManageSeats() {
		s.fail(w, errNoAccess)
		return storage.Session{}, false
	}
	return sess, true
}

// portalAuth is the customer portal's authorization: a customer or member
// session (auth).
func (s *Server) portalAuth(w http.ResponseWriter, r *http.Request, need access) (caller, bool) {
	scope, manage := storage.ScopeRead, false
	if need == writeAccess {
		scope, manage = storage.ScopeWrite, true
	}
	sess, ok := s.auth(w, r, scope, manage)
	if !ok {
		return caller{}, false
	}
	return caller{Owner: storage.Owner{CustomerID: sess.CustomerID}, memberID: sess.MemberID, bucket: sess.ID}, true
}

// submission carries a request through record → publish → wait → answer.
type submission struct {
	req      events.Request
	key      string
	bodyHash []byte
	async    bool
	// poll is the API the request came through: its outcome is polled
	// under poll + "/requests/".
	poll string
	// claim: the caller has no session, so it can read no queued request;
	// it is answered in this response or told to retry with its key.
	claim bool
}

// submit records, publishes and answers one request.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, sub submission) {
	ctx := r.Context()
	req := sub.req
	telemetry.SetRequestID(ctx, req.ID)
	rec, err := s.ledger.Submit(ctx, storage.Submission{Request: req, IdempotencyKey: sub.key, BodyHash: sub.bodyHash})
	if err != nil {
		s.fail(w, err)
		return
	}
	if rec.Replayed {
		telemetry.SetRequestID(ctx, rec.ID)
		w.Header().Set("Idempotent-Replayed", "true")
		if rec.Result != nil {
			s.writeReplay(w, r, *rec.Result)
			return
		}
		// The first call is still in flight: wait for its outcome in the
		// ledger, as it was not published with our reply inbox.
		if sub.async {
			s.writeQueued(w, sub.poll, rec.ID)
			return
		}
		s.awaitLedger(w, r, rec.ID, sub)
		return
	}
	if sub.async {
		// The ledger row is committed: the request is durable in Postgres,
		// and the requeuer re-publishes it should this publish be lost. So
		// the 202 does not wait for the stream's fsync.
		m, err := stream.RequestMsg(req)
		if err != nil {
			s.publishFailed(ctx, w, req, err) // events.ErrMalformed: 422, nothing to retry
			return
		}
		telemetry.InjectNATS(ctx, m.Header) // the worker's span joins this request's trace
		s.publishInBackground(req.ID, m)
		s.writeQueued(w, sub.poll, req.ID)
		return
	}
	ch, cancel := s.wait(req.ID)
	defer cancel()
	if err := s.publish(ctx, req); err != nil {
		if errors.Is(err, events.ErrMalformed) || ctx.Err() != nil {
			s.publishFailed(ctx, w, req, err)
			return
		}
		// The request is in the ledger, so it is accepted: JetStream is
		// electing a leader, or this ingress is reconnecting. It is
		// published in the background (by the worker's requeuer, should this
		// process die); the caller polls, or retries with its
		// Idempotency-Key.
		s.log.Warn("publish failed; answering 202 and publishing in the background", "request_id", req.ID, "err", err)
		m, _ := stream.RequestMsg(req) // it encoded a moment ago
		telemetry.InjectNATS(ctx, m.Header)
		s.publishInBackground(req.ID, m)
		s.writePending(w, req.ID, sub)
		return
	}
	timer := time.NewTimer(s.cfg.SyncTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		s.writeResult(w, res)
	case <-timer.C:
		s.writePending(w, req.ID, sub)
	case <-ctx.Done():
		// The caller left; the request goes on and can be polled.
	}
}

// publishFailed answers a request that could not be handed to the stream.
func (s *Server) publishFailed(ctx context.Context, w http.ResponseWriter, req events.Request, err error) {
	s.log.Warn("publish failed", "request_id", req.ID, "err", err)
	code, detail := events.CodeUnavailable, "The request could not be queued"
	if errors.Is(err, events.ErrMalformed) {
		// Not the stream's fault: retrying cannot help, so say so.
		code, detail = events.CodeInvalid, "The request could not be queued: "+err.Error()
	}
	// Mark it failed so a late copy of the message changes nothing, and an
	// idempotent replay gets this answer rather than a hang.
	if _, ferr := s.cfg.DB.Fail(context.WithoutCancel(ctx), req, code, detail); ferr != nil {
		s.log.Warn("recording publish failure", "request_id", req.ID, "err", ferr)
	}
	if code == events.CodeInvalid {
		writeError(w, events.Errorf(code, "%s", detail))
		return
	}
	writeError(w, events.Errorf(events.CodeUnavailable, "The request could not be queued; try again"))
}

// writePending answers a request whose outcome is not known yet: 202 and a
// Location to poll, or for a claim (whose caller cannot poll) 503 with
// Retry-After: the same Idempotency-Key then collects the outcome.
func (s *Server) writePending(w http.ResponseWriter, id string, sub submission) {
	if !sub.claim {
		s.writeQueued(w, sub.poll, id)
		return
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, events.Errorf(events.CodeUnavailable,
		"The claim is still being processed; retry with the same Idempotency-Key to collect its outcome"))
}

// writeReplay answers an idempotent replay with the recorded outcome. A
// claim's outcome holds a session token derived from the request id; it is
// handed out again only while that session is live. A seat revoked since
// (which ends the session) or a session expired makes the replay answer
// like a claim of a dead invitation, without a credential.
func (s *Server) writeReplay(w http.ResponseWriter, r *http.Request, res events.Result) {
	if res.OK() && res.SessionID != "" {
		live, err := s.cfg.DB.SessionLive(r.Context(), res.SessionID)
		if err != nil {
			s.fail(w, err)
			return
		}
		if !live {
			writeError(w, events.Errorf(events.CodeInvalidToken,
				"Invalid or expired invitation token: the seat was claimed, and the session the claim created has ended"))
			return
		}
	}
	s.writeResult(w, res)
}

// publish hands req to the stream and waits until the stream has stored
// it, retrying for up to SEATD_SYNC_TIMEOUT: on a NATS cluster a lost node
// means a reconnect and a stream leader election, a few seconds in which a
// publish fails. A retry has the same Nats-Msg-Id, so a copy that did reach
// the stream is dropped as a duplicate.
func (s *Server) publish(ctx context.Context, req events.Request) error {
	m, err := stream.RequestMsg(req)
	if err != nil {
		return err
	}
	telemetry.InjectNATS(ctx, m.Header) // the worker's span joins this request's trace
	return s.publishRetrying(ctx, req.ID, m, syncRetry, time.Now().Add(s.cfg.SyncTimeout))
}

// publishInBackground hands m to the stream without making the caller
// wait, retrying with backoff for a minute. A request it cannot publish
// (JetStream away that long, too many publishes in flight, or the Server
// closed) stays queued in the ledger, where the worker's requeuer finds it.
func (s *Server) publishInBackground(id string, m stream.Msg) {
	select {
	case s.publishing <- struct{}{}:
	default:
		s.log.Warn("too many publishes in flight; the requeuer will publish this one", "request_id", id)
		return
	}
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		defer func() { <-s.publishing }()
		ctx, cancel := context.WithTimeout(s.bg, time.Minute)
		defer cancel()
		// No deadline of its own: ctx ends the tries after the minute.
		if err := s.publishRetrying(ctx, id, m, backgroundRetry, time.Now().Add(time.Hour)); err != nil {
			s.log.Warn("publish not acknowledged; the requeuer will re-publish it", "request_id", id, "err", err)
		}
	}()
}

// retry is how a publish is tried again: each attempt waits at most
// attempt for the stream's ack, and the delay between attempts doubles
// from base to max.
type retry struct{ attempt, base, max time.Duration }

var (
	syncRetry       = retry{attempt: 5 * time.Second, base: 100 * time.Millisecond, max: time.Second}
	backgroundRetry = retry{attempt: stream.AckTimeout, base: time.Second, max: 10 * time.Second}
)

// publishRetrying publishes m (request id) until the stream stores it, ctx
// ends, or the next attempt would start after deadline, and returns the
// last error.
func (s *Server) publishRetrying(ctx context.Context, id string, m stream.Msg, p retry, deadline time.Time) error {
	for attempt := uint64(1); ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.attempt)
		_, err := stream.Publish(actx, s.cfg.JS, m)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		delay := stream.Backoff(p.base, p.max, attempt)
		if time.Now().Add(delay).After(deadline) {
			return err
		}
		s.log.Debug("publish failed; retrying", "request_id", id, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}

// awaitLedger waits for the outcome of request id, which sub replays, by
// polling the ledger.
func (s *Server) awaitLedger(w http.ResponseWriter, r *http.Request, id string, sub submission) {
	deadline := time.Now().Add(s.cfg.SyncTimeout)
	for time.Now().Before(deadline) {
		rec, err := s.cfg.DB.Request(r.Context(), id, storage.Caller(sub.req))
		if err != nil {
			s.fail(w, err)
			return
		}
		if rec.Result != nil {
			s.writeReplay(w, r, *rec.Result)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.writePending(w, id, sub)
}

// writeQueued answers 202 for request id, to be polled under the API
// prefix poll.
func (s *Server) writeQueued(w http.ResponseWriter, poll, id string) {
	w.Header().Set("Location", poll+"/requests/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"request_id": id, "status": "queued"})
}

// writeResult answers with a worker's result.
func (s *Server) writeResult(w http.ResponseWriter, res events.Result) {
	if !res.OK() {
		writeError(w, &events.Error{Code: res.Code, Detail: res.Detail})
		return
	}
	if res.SessionID != "" { // a claim
		writeJSON(w, 200, map[string]any{"seat": res.Seat, "customer_session_token": s.cfg.Keys.SessionToken(res.RequestID)})
		return
	}
	writeJSON(w, 200, res.Seat)
}

// fail answers with an error; errors without a code are logged and
// answered 500 without details.
func (s *Server) fail(w http.ResponseWriter, err error) {
	if events.ErrorCode(err) == events.CodeInternal && !errors.As(err, new(*events.ValidationError)) {
		s.log.Error("internal error", "err", err)
	}
	writeError(w, err)
}

// errorBody is Polar's error body: the error's name (see answers) and its
// message.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

// validationBody is the 422 body: the spec's HTTPValidationError, with the
// error's name beside it as Polar sends it.
type validationBody struct {
	Error  string              `json:"error"`
	Detail []events.FieldError `json:"detail"`
}

// writeError answers err in Polar's shape, with the status and name of its
// code (the answers table). A 422 always carries a list of field errors;
// a 401 always carries WWW-Authenticate.
func writeError(w http.ResponseWriter, err error) {
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusUnprocessableEntity, validationBody{Error: answerTo(events.CodeInvalid).name, Detail: ve.Detail})
		return
	}
	code := events.ErrorCode(err)
	detail := "Internal Server Error"
	var e *events.Error
	if errors.As(err, &e) {
		detail = e.Detail
	}
	a := answerTo(code)
	switch a.status {
	case http.StatusUnprocessableEntity:
		writeJSON(w, a.status, validationBody{Error: a.name,
			Detail: []events.FieldError{{Loc: []any{"body"}, Msg: detail, Type: "value_error"}}})
		return
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="polar"`)
	}
	writeJSON(w, a.status, errorBody{Error: a.name, Detail: detail})
}

// WriteError answers err as the ingress would, for a handler that serves
// before the ingress exists (a process still starting).
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newRequestID() string { return uuid.NewString() }

func hashOf(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		_, _ = fmt.Fprintf(h, "%d:", len(p)) // a hash.Hash's Write never fails
		h.Write(p)
	}
	return h.Sum(nil)
}

// HTTPServer returns the http.Server seatd serves the ingress with: header,
// read, write and idle timeouts so slow or stalled clients cannot hold
// connections, bounded headers, and no version banner (Go sends none).
func (s *Server) HTTPServer() *http.Server { return NewHTTPServer(s, s.cfg.SyncTimeout, s.log) }

// NewHTTPServer is an http.Server with the ingress's timeouts around h: a
// process that listens before its Server exists serves through it.
func NewHTTPServer(h http.Handler, syncTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      syncTimeout + 30*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
