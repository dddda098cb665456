// Package seatdtest assembles a real seatd pipeline for tests: a fresh
// Postgres database, an embedded JetStream server on a random port, worker
// replicas, the outbox relay and the HTTP ingress on an httptest server,
// plus helpers to provision customers and call the API.
package seatdtest

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/seatd/seatd/cmd/internal/ingress"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/invite"
	"github.com/seatd/seatd/mailer"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
	"github.com/seatd/seatd/worker"
)

// PublicURL is the base of claim links in tests' invitation emails.
const PublicURL = "http://seats.example.test"

// Options tune the pipeline.
type Options struct {
	Workers       int           // worker replicas; default 1, -1 for none
	SyncTimeout   time.Duration // default 10s
	RateLimit     float64
	RateBurst     int
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
}

// Env is a running pipeline.
type Env struct {
	T        testing.TB
	DBURL    string
	DB       *storage.DB
	Server   *server.Server
	NC       *nats.Conn
	JS       jetstream.JetStream
	Keys     storage.Keys
	Settings storage.Settings
	HTTP     *httptest.Server
	Ingress  *ingress.Server
	Log      *slog.Logger

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
func TestKeys() storage.Keys {
	k, err := storage.NewKeys([]byte("seatd-test-secret-key-0123456789abcdef"))
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
	e := &Env{T: t, Log: Logger(), Keys: TestKeys(), opts: opts}
	e.Settings = storage.Settings{Keys: e.Keys, InvitationTTL: opts.InvitationTTL}
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

	for i := 0; i < opts.Workers; i++ {
		e.StartWorker()
	}
	poke := make(chan struct{}, 1)
	relay := &worker.Relay{DB: e.DB, JS: e.JS, Log: e.Log, Poke: poke, Tick: 20 * time.Millisecond}
	e.goRun(relay.Run)

	// The HTTP server's address is known before anything is sent, so
	// emails can link to it.
	e.HTTP = httptest.NewUnstartedServer(nil)
	publicURL := PublicURL
	if opts.LiveLinks {
		publicURL = "http://" + e.HTTP.Listener.Addr().String()
	}
	if opts.Mail != "" {
		smtpURL := opts.Mail
		if smtpURL == "drop" {
			smtpURL = ""
		}
		sender, _, err := mailer.NewSender(smtpURL, opts.MailDir, e.Log)
		if err != nil {
			t.Fatal(err)
		}
		m := mailer.New(mailer.Config{DB: e.DB, JS: e.JS, Sender: sender, Keys: e.Keys, PublicURL: publicURL, Templates: opts.Templates,
			Log: e.Log, RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, FetchWait: 200 * time.Millisecond})
		e.goRun(m.Run)
	}

	srv, err := ingress.New(ingress.Config{DB: e.DB, NC: e.NC, JS: e.JS, Keys: e.Keys, Log: e.Log,
		SyncTimeout: opts.SyncTimeout, RateLimit: opts.RateLimit, RateBurst: opts.RateBurst, Templates: opts.Templates})
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

// StartNATS runs an embedded JetStream server with its store in dir.
func StartNATS(t testing.TB, dir string) *server.Server {
	t.Helper()
	return startNATS(t, dir, time.Second)
}

func startNATS(t testing.TB, dir string, fsync time.Duration) *server.Server {
	t.Helper()
	s, err := events.StartServer(events.ServerConfig{Port: -1, StoreDir: dir, Fsync: fsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func (e *Env) connect() {
	nc, err := events.Connect(e.Server.ClientURL(), "seatdtest")
	if err != nil {
		e.T.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := events.SetupStreams(ctx, js, events.StreamConfig{}); err != nil {
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

// StartWorker starts one more worker replica, on its own NATS connection
// like a separate process, and returns a function that stops it.
func (e *Env) StartWorker() context.CancelFunc {
	nc, err := events.Connect(e.Server.ClientURL(), "seatdtest-worker")
	if err != nil {
		e.T.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		e.T.Fatal(err)
	}
	w := worker.New(worker.Config{DB: e.DB, NC: nc, JS: js, Settings: e.Settings, Log: e.Log,
		BatchSize: e.opts.BatchSize, MaxDeliveries: e.opts.MaxDeliveries, BackoffBase: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(done)
		defer nc.Close()
		_ = w.Run(ctx)
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
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// WaitFor polls cond every 10ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
