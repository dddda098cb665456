package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	storagetest.Main(m)
}

var testSecretKey = []byte("webhook-test-secret-0123456789abcdef")

// bundle is what a webhook test works with: its own database, a JetStream
// server with seatd's streams, an organization with a subscription, and an
// Admin.
type bundle struct {
	dbURL string
	nats  string // the JetStream server's client URL
	db    *storage.DB
	js    jetstream.JetStream
	keys  secret.Keys
	admin *Admin
	org   string
	sub   string
}

func setup(t testing.TB) *bundle {
	t.Helper()
	ctx := t.Context()
	b := &bundle{dbURL: storagetest.NewDatabase(t)}
	db, err := storage.Open(ctx, b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	b.db = db
	ns, err := stream.StartServer(stream.ServerConfig{Port: -1, StoreDir: t.TempDir(), Fsync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	b.nats = ns.ClientURL()
	nc, err := stream.Connect(ns.ClientURL(), "webhook-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := stream.SetupStreams(ctx, b.js, stream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if b.keys, err = secret.NewKeys(testSecretKey); err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(b.keys)
	if err != nil {
		t.Fatal(err)
	}
	b.admin = &Admin{DB: db, Sealer: sealer}
	b.org, b.sub = b.pool(t, "Acme")
	return b
}

// pool creates an organization, a buyer and a subscription.
func (b *bundle) pool(t testing.TB, name string) (org, sub string) {
	t.Helper()
	ctx := t.Context()
	org, err := b.db.CreateOrganization(ctx, name, true, false)
	if err != nil {
		t.Fatal(err)
	}
	cust, err := b.db.CreateCustomer(ctx, org, "buyer@"+org[:8]+".test", "")
	if err != nil {
		t.Fatal(err)
	}
	sub = storagetest.Pool(t, b.db, "subscription", cust, "Pro", 100, "active")
	return org, sub
}

// endpoint creates an endpoint of the bundle's organization.
func (b *bundle) endpoint(t testing.TB, url string, types ...events.SeatEventType) (Endpoint, string) {
	t.Helper()
	list := []string{}
	for _, tp := range types {
		list = append(list, string(tp))
	}
	if len(list) == 0 {
		list, _ = ParseEvents("")
	}
	ep, secret, err := b.admin.Create(t.Context(), b.org, url, list)
	if err != nil {
		t.Fatal(err)
	}
	return ep, secret
}

// config is a Runner configuration with test timings.
func (b *bundle) config(t testing.TB) Config {
	return Config{
		DB: b.db, JS: b.js, Keys: b.keys, Log: testLogger(t),
		Timeout: 2 * time.Second, RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, FetchWait: 500 * time.Millisecond,
	}
}

// run starts a Runner and returns a function that stops it and waits for
// Run to return; the test's cleanup stops it too.
func run(t testing.TB, cfg Config) (stop func()) {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return within 15s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn + 4
	if os.Getenv("SEATD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// seatEvent is a seat event as the outbox relay publishes it.
func (b *bundle) seatEvent(sub, seatID string, version int, typ events.SeatEventType) events.SeatEvent {
	now := time.Now().UTC()
	email := "dev-" + seatID[:8] + "@acme.test"
	seat := events.CustomerSeat{CreatedAt: now, ID: seatID, SubscriptionID: &sub, Email: &email, Status: events.SeatPending}
	switch typ {
	case events.SeatClaimedEvent:
		seat.Status, seat.ClaimedAt = events.SeatClaimed, &now
	case events.SeatRevokedEvent:
		seat.Status, seat.RevokedAt = events.SeatRevoked, &now
	}
	return events.SeatEvent{ID: uuid.NewString(), Type: typ, Timestamp: now, Version: version, Data: seat}
}

// publish sends ev to the stream under msgID ("" for the relay's own).
func (b *bundle) publish(t testing.TB, ev events.SeatEvent, msgID string) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if msgID == "" {
		msgID = "event-" + ev.ID
	}
	if _, err := b.js.Publish(t.Context(), events.SeatEventSubject(ev.Type), data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// hit is one request the receiver got.
type hit struct {
	id, timestamp, signature, contentType string
	body                                  []byte
	at                                    time.Time
	status                                int // what the receiver answered; 0 if it timed out the sender
	seat                                  string
	typ                                   string
}

// receiver is a real HTTP server that records every request and answers
// what respond says (by default 204).
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	// respond decides the answer to the n-th request (from 1) of body's
	// seat and type; a negative status sleeps -status milliseconds first,
	// then answers 200 (too late for a short Timeout).
	respond func(h hit, n int) int
	hits    []hit
	counts  map[string]int
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{counts: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hit{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"),
		signature: r.Header.Get("webhook-signature"), contentType: r.Header.Get("Content-Type"), body: body, at: time.Now()}
	var p struct {
		Type string `json:"type"`
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &p)
	h.seat, h.typ = p.Data.ID, p.Type
	rc.mu.Lock()
	key := h.seat + " " + h.typ
	rc.counts[key]++
	n := rc.counts[key]
	respond := rc.respond
	rc.mu.Unlock()
	status := http.StatusNoContent
	if respond != nil {
		status = respond(h, n)
	}
	if status < 0 {
		select {
		case <-time.After(time.Duration(-status) * time.Millisecond):
		case <-r.Context().Done():
		}
		status = 0
	} else if status >= 300 && status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	h.status = status
	rc.mu.Lock()
	rc.hits = append(rc.hits, h)
	rc.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "answer %d", status)
}

func (rc *receiver) setRespond(f func(h hit, n int) int) {
	rc.mu.Lock()
	rc.respond = f
	rc.mu.Unlock()
}

func (rc *receiver) all() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// succeeded returns the 2xx answers, in the order they were given.
func (rc *receiver) succeeded() []hit {
	var out []hit
	for _, h := range rc.all() {
		if h.status >= 200 && h.status < 300 {
			out = append(out, h)
		}
	}
	return out
}

// checkFor calls f every interval until it returns nil, and fails the
// test with f's last error after timeout.
func checkFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliveryOf returns the delivery of the event to the endpoint.
func (b *bundle) deliveryOf(t *testing.T, endpointID, eventID string) Delivery {
	t.Helper()
	ds, err := b.admin.queryDeliveries(t.Context(), b.db.Pool, `d.endpoint_id = $1 AND d.event_id = $2`, endpointID, eventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d deliveries of event %s to endpoint %s, want 1", len(ds), eventID, endpointID)
	}
	return ds[0]
}

func (b *bundle) waitStatus(t *testing.T, endpointID, eventID, status string, timeout time.Duration) Delivery {
	t.Helper()
	var d Delivery
	checkFor(t, timeout, func() error {
		ds, err := b.admin.queryDeliveries(t.Context(), b.db.Pool, `d.endpoint_id = $1 AND d.event_id = $2`, endpointID, eventID)
		if err != nil {
			return err
		}
		if len(ds) != 1 {
			return fmt.Errorf("%d deliveries of event %s", len(ds), eventID)
		}
		d = ds[0]
		if d.Status != status {
			return fmt.Errorf("delivery of event %s is %s after %d attempts (last error %v), want %s", eventID, d.Status, d.Attempts, deref(d.LastError), status)
		}
		return nil
	})
	return d
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
