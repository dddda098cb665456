// Package seatdtest assembles a real seatd pipeline for tests: a fresh
// Postgres database, an embedded JetStream server on a random port, worker
// replicas, the outbox relay and the HTTP ingress on an httptest server,
// plus helpers to provision customers and call the API.
package seatdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/cmd/internal/roles"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

// PublicURL is the base of claim links in tests' invitation emails.
const PublicURL = "http://seats.example.test"

// Options tune the pipeline.
type Options struct {
	Workers       int           // worker replicas; default 1, -1 for none
	SyncTimeout   time.Duration // default 10s
	RateLimit     float64
	RateBurst     int
	AuthFailLimit float64 // bad-token requests per second per client address; 0: seatd's default
	AuthFailBurst int
	BodyTimeout   time.Duration // 0: seatd's default
	InvitationTTL time.Duration
	BatchSize     int
	MaxDeliveries int
	DatabaseURL   string // default: a fresh database
	// Mail starts a mailer: "drop" writes .eml files under MailDir, any
	// other value is an SMTP_URL. Empty: no mailer.
	Mail    string
	MailDir string
	// FsyncAlways runs JetStream with seatd's default durability (fsync
	// every write) instead of the tests' 1s interval.
	FsyncAlways bool
	// LiveLinks makes the emails' claim links point at the test HTTP
	// server (a browser can open them) instead of PublicURL.
	LiveLinks bool
	// Templates for the email and the claim page; nil: the embedded ones.
	Templates *invite.Templates
	// Log receives every component's log; nil: Logger().
	Log *slog.Logger
}

// Env is a running pipeline.
type Env struct {
	T        testing.TB
	DBURL    string
	DB       *storage.DB
	Server   *server.Server
	NC       *nats.Conn
	JS       jetstream.JetStream
	Keys     secret.Keys
	Settings storage.Settings
	HTTP     *httptest.Server
	Ingress  *ingress.Server
	Log      *slog.Logger

	cfg       config.Config
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	opts      Options
	workers   []context.CancelFunc
	closeOnce sync.Once
}

// Logger is quiet unless SEATD_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("SEATD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestKeys are fixed token keys for tests.
func TestKeys() secret.Keys {
	k, err := secret.NewKeys([]byte("seatd-test-secret-key-0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return k
}

// New starts a pipeline; t.Cleanup stops it.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.SyncTimeout == 0 {
		opts.SyncTimeout = 10 * time.Second
	}
	e := &Env{T: t, Log: opts.Log, Keys: TestKeys(), opts: opts}
	if e.Log == nil {
		e.Log = Logger()
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.DBURL = opts.DatabaseURL
	if e.DBURL == "" {
		e.DBURL = storagetest.NewDatabase(t)
	}
	db, err := storage.Open(e.ctx, e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	e.DB = db
	fsync := time.Second
	if opts.FsyncAlways {
		fsync = 0
	}
	e.Server = startNATS(t, t.TempDir(), fsync)
	e.connect()

	// The deployment's configuration, as `seatd serve` would read it,
	// with the tests' options; zero values leave each component's default.
	e.cfg = config.Defaults()
	e.cfg.SyncTimeout, e.cfg.RateLimit, e.cfg.RateBurst = opts.SyncTimeout, opts.RateLimit, opts.RateBurst
	e.cfg.InvitationTTL, e.cfg.WorkerBatch, e.cfg.MaxDeliveries = opts.InvitationTTL, opts.BatchSize, opts.MaxDeliveries
	e.cfg.AuthFailLimit, e.cfg.AuthFailBurst, e.cfg.BodyTimeout = opts.AuthFailLimit, opts.AuthFailBurst, opts.BodyTimeout
	// The HTTP server's address is known before anything is sent, so
	// emails can link to it.
	e.HTTP = httptest.NewUnstartedServer(nil)
	e.cfg.PublicURL, e.cfg.DataDir = PublicURL, opts.MailDir
	if opts.LiveLinks {
		e.cfg.PublicURL = "http://" + e.HTTP.Listener.Addr().String()
	}
	e.cfg.MailRetryBase, e.cfg.MailRetryMax = 50*time.Millisecond, 500*time.Millisecond
	e.Settings = roles.Settings(&e.cfg, e.Keys)

	for i := 0; i < opts.Workers; i++ {
		e.StartWorker()
	}
	if opts.Mail != "" {
		cfg := e.cfg
		if opts.Mail != "drop" {
			cfg.SMTPURL = opts.Mail
		}
		m, err := roles.Mailer(&cfg, e.deps(e.NC, e.JS), tuning)
		if err != nil {
			t.Fatal(err)
		}
		e.goRun(m.Run)
	}

	srv, err := roles.Ingress(&e.cfg, e.deps(e.NC, e.JS))
	if err != nil {
		e.HTTP.Close()
		t.Fatal(err)
	}
	e.Ingress = srv
	e.HTTP.Config.Handler = srv
	e.HTTP.Start()
	t.Cleanup(e.Close)
	return e
}

// tuning shortens the production delays so tests finish quickly.
var tuning = roles.Tuning{WorkerBackoffBase: 20 * time.Millisecond, WorkerBackoffMax: 500 * time.Millisecond,
	RelayTick: 20 * time.Millisecond, MailFetchWait: 200 * time.Millisecond}

func (e *Env) deps(nc *nats.Conn, js jetstream.JetStream) roles.Deps {
	return roles.Deps{DB: e.DB, NC: nc, JS: js, Keys: e.Keys, Log: e.Log, Templates: e.opts.Templates}
}

// StartNATS runs an embedded JetStream server with its store in dir.
func StartNATS(t testing.TB, dir string) *server.Server {
	t.Helper()
	return startNATS(t, dir, time.Second)
}

func startNATS(t testing.TB, dir string, fsync time.Duration) *server.Server {
	t.Helper()
	s, err := stream.StartServer(stream.ServerConfig{Port: -1, StoreDir: dir, Fsync: fsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func (e *Env) connect() {
	nc, err := stream.Connect(e.Server.ClientURL(), "seatdtest")
	if err != nil {
		e.T.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := stream.SetupStreams(ctx, js, stream.StreamConfig{}); err != nil {
		e.T.Fatal(err)
	}
	e.NC, e.JS = nc, js
}

func (e *Env) goRun(run func(context.Context) error) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := run(e.ctx); err != nil {
			e.Log.Error("component stopped", "err", err)
		}
	}()
}

// StartWorker starts one more worker replica (consumer, relay, requeuer),
// on its own NATS connection like a separate process, and returns a
// function that stops it.
func (e *Env) StartWorker() context.CancelFunc {
	nc, err := stream.Connect(e.Server.ClientURL(), "seatdtest-worker")
	if err != nil {
		e.T.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(done)
		defer nc.Close()
		var wg sync.WaitGroup
		for _, r := range roles.Worker(&e.cfg, e.deps(nc, js), tuning) {
			wg.Go(func() {
				if err := r.Run(ctx); err != nil {
					e.Log.Error(r.Name+" stopped", "err", err)
				}
			})
		}
		wg.Wait()
	}()
	stop := func() { cancel(); <-done }
	e.workers = append(e.workers, stop)
	return stop
}

// Close stops everything; it may be called more than once.
func (e *Env) Close() { e.closeOnce.Do(e.close) }

func (e *Env) close() {
	e.HTTP.Close()
	e.Ingress.Close()
	e.cancel()
	e.wg.Wait()
	e.NC.Close()
	e.DB.Close()
}

// Response is an HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %d: %v: %s", r.Status, err, r.Body)
	}
}

// Do calls the API. body may be nil, a string / []byte (sent as is) or a
// value (sent as JSON). headers are name, value pairs.
func (e *Env) Do(method, path, token string, body any, headers ...string) Response {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.T.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.HTTP.URL+path, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := e.HTTP.Client().Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// WaitFor polls cond until it holds or timeout passes
// (storagetest.Eventually for a condition with nothing more to say).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	storagetest.Eventually(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// SeatCount is how many seats the database holds, in any status.
func (e *Env) SeatCount() int {
	e.T.Helper()
	var n int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats`).Scan(&n); err != nil {
		e.T.Fatal(err)
	}
	return n
}

// WaitApplied waits until the worker has applied request id successfully,
// and says where the request stood if it never is.
func (e *Env) WaitApplied(id string) {
	e.T.Helper()
	storagetest.Eventually(e.T, 10*time.Second, "request "+id+" applied", func() error {
		var status string
		if err := e.DB.Pool.QueryRow(context.Background(), `SELECT status FROM requests WHERE id = $1`, id).Scan(&status); err != nil {
			return err // missing until recorded: keep polling
		}
		if status != string(storage.RequestSucceeded) {
			return fmt.Errorf("status %s", status)
		}
		return nil
	})
}
