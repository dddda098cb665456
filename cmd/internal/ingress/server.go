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
	"github.com/seatd/seatd/storage"
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
	Keys        storage.Keys
	Log         *slog.Logger
	SyncTimeout time.Duration // how long a sync call waits for the worker; default 10s
	RateLimit   float64       // write requests per second per token; 0 disables
	RateBurst   int
}

// Server is the HTTP ingress.
type Server struct {
	cfg     Config
	log     *slog.Logger
	inbox   string
	sub     *nats.Subscription
	mu      sync.Mutex
	waiters map[string]chan events.Result
	limiter *limiter
	mux     *http.ServeMux

	bg           context.Context // ends at Close: background publishes stop
	stopBG       context.CancelFunc
	republishing chan struct{} // a slot per background publish
}

// New subscribes to this ingress's reply inbox and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("role", "ingress"), inbox: nats.NewInbox(),
		waiters: map[string]chan events.Result{}, limiter: newLimiter(cfg.RateLimit, cfg.RateBurst)}
	sub, err := cfg.NC.Subscribe(s.inbox+".*", s.onResult)
	if err != nil {
		return nil, fmt.Errorf("ingress: subscribe: %w", err)
	}
	s.sub = sub
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.republishing = make(chan struct{}, 1000)
	s.routes()
	return s, nil
}

// Close stops receiving results and publishing in the background.
func (s *Server) Close() {
	_ = s.sub.Unsubscribe()
	s.stopBG()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/customer-portal/seats", s.assign)
	m.HandleFunc("GET /v1/customer-portal/seats", s.list)
	m.HandleFunc("POST /v1/customer-portal/seats/batch", s.batch)
	m.HandleFunc("GET /v1/customer-portal/seats/batches/{id}", s.getBatch)
	m.HandleFunc("GET /v1/customer-portal/seats/requests/{id}", s.getRequest)
	m.HandleFunc("POST /v1/customer-portal/seats/{id}/resend", s.resend)
	m.HandleFunc("DELETE /v1/customer-portal/seats/{id}", s.revoke)
	m.HandleFunc("GET /v1/customer-seats/claim/{token}", s.claimInfo)
	m.HandleFunc("POST /v1/customer-seats/claim", s.claim)
	m.HandleFunc("GET /claim", s.claimPage)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	m.HandleFunc("GET /readyz", s.ready)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, events.Errorf(events.CodeNotFound, "Not found"))
	})
	s.mux = m
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

// auth authenticates the bearer token and checks scope and role.
func (s *Server) auth(r *http.Request, scope string, manage bool) (storage.Session, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		token, ok = strings.CutPrefix(h, "bearer ")
	}
	if !ok || strings.TrimSpace(token) == "" {
		return storage.Session{}, events.Errorf(events.CodeUnauthorized, "Authentication required")
	}
	sess, err := s.cfg.DB.Authenticate(r.Context(), strings.TrimSpace(token))
	if err != nil {
		return storage.Session{}, err
	}
	if !sess.HasScope(scope) {
		return storage.Session{}, events.Errorf(events.CodeForbidden, "The session lacks the %s scope", scope)
	}
	if manage && !sess.CanManageSeats() {
		return storage.Session{}, events.Errorf(events.CodeForbidden, "Only owners and billing managers can manage seats")
	}
	return sess, nil
}

// submission carries a request through record → publish → wait → answer.
type submission struct {
	req      events.Request
	key      string
	bodyHash []byte
	async    bool
}

// submit records, publishes and answers one request.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, sub submission) {
	ctx := r.Context()
	req := sub.req
	rec, err := s.cfg.DB.Submit(ctx, storage.Submission{Request: req, IdempotencyKey: sub.key, BodyHash: sub.bodyHash})
	if err != nil {
		s.fail(w, err)
		return
	}
	if rec.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		if rec.Result != nil {
			s.writeResult(w, *rec.Result)
			return
		}
		// The first call is still in flight: wait for its outcome in the
		// ledger, as it was not published with our reply inbox.
		if sub.async {
			s.writeQueued(w, rec.ID)
			return
		}
		s.awaitLedger(w, r, rec.ID, req)
		return
	}
	ch, cancel := s.wait(req.ID)
	defer cancel()
	if err := s.publish(ctx, req); err != nil {
		// The request is in the ledger, so it is accepted: JetStream is
		// electing a leader or this ingress is reconnecting. Publish it in
		// the background (the worker's requeuer does if this process dies);
		// the caller polls, or retries with its Idempotency-Key.
		s.log.Warn("publish failed; answering 202 and publishing in the background", "request_id", req.ID, "err", err)
		s.republish(req)
		s.writeQueued(w, req.ID)
		return
	}
	if sub.async {
		s.writeQueued(w, req.ID)
		return
	}
	timer := time.NewTimer(s.cfg.SyncTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		s.writeResult(w, res)
	case <-timer.C:
		s.writeQueued(w, req.ID)
	case <-ctx.Done():
		// The caller left; the request goes on and can be polled.
	}
}

// republish retries publishing req in the background for a minute, with
// backoff; after that (or when too many are pending, or the Server is
// closed) the worker's requeuer publishes it from the ledger.
func (s *Server) republish(req events.Request) {
	select {
	case s.republishing <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-s.republishing }()
		ctx, cancel := context.WithTimeout(s.bg, time.Minute)
		defer cancel()
		for attempt := uint64(1); ctx.Err() == nil; attempt++ {
			if err := s.publish(ctx, req); err == nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(events.Backoff(time.Second, 10*time.Second, attempt)):
			}
		}
	}()
}

// publish publishes req, retrying for up to SyncTimeout: on a NATS cluster
// a lost node means a reconnect and a stream leader election, a few
// seconds in which a publish fails. A retry has the same Nats-Msg-Id, so a
// copy that did reach the stream is dropped as a duplicate.
func (s *Server) publish(ctx context.Context, req events.Request) error {
	data, err := req.Encode()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.cfg.SyncTimeout)
	for attempt := uint64(1); ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = s.cfg.JS.Publish(actx, events.RequestsSubject, data, jetstream.WithMsgID(req.ID))
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		delay := events.Backoff(100*time.Millisecond, time.Second, attempt)
		if time.Now().Add(delay).After(deadline) {
			return err
		}
		s.log.Debug("publish failed; retrying", "request_id", req.ID, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// awaitLedger waits for a request's outcome by polling the ledger.
func (s *Server) awaitLedger(w http.ResponseWriter, r *http.Request, id string, req events.Request) {
	deadline := time.Now().Add(s.cfg.SyncTimeout)
	for time.Now().Before(deadline) {
		rec, err := s.cfg.DB.Request(r.Context(), id, storage.Caller(req))
		if err != nil {
			s.fail(w, err)
			return
		}
		if rec.Result != nil {
			s.writeResult(w, *rec.Result)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.writeQueued(w, id)
}

func (s *Server) writeQueued(w http.ResponseWriter, id string) {
	w.Header().Set("Location", "/v1/customer-portal/seats/requests/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"request_id": id, "status": "queued"})
}

// writeResult answers with a worker's result.
func (s *Server) writeResult(w http.ResponseWriter, res events.Result) {
	if !res.OK() {
		writeJSON(w, res.Code.HTTPStatus(), errorBody{Error: string(res.Code), Detail: res.Detail})
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
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		writeJSON(w, 422, ve)
		return
	}
	if events.ErrorCode(err) == events.CodeInternal {
		s.log.Error("internal error", "err", err)
	}
	writeError(w, err)
}

type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

func writeError(w http.ResponseWriter, err error) {
	code := events.ErrorCode(err)
	detail := "Internal server error"
	var e *events.Error
	if errors.As(err, &e) {
		detail = e.Detail
	}
	writeJSON(w, code.HTTPStatus(), errorBody{Error: string(code), Detail: detail})
}

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
		fmt.Fprintf(h, "%d:", len(p))
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
