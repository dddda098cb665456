package worker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/worker"
)

// captureLog records log records' messages and attributes.
type captureLog struct {
	mu   sync.Mutex
	recs []string
}

func (c *captureLog) Enabled(context.Context, slog.Level) bool { return true }
func (c *captureLog) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	c.mu.Lock()
	c.recs = append(c.recs, s)
	c.mu.Unlock()
	return nil
}
func (c *captureLog) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captureLog) WithGroup(string) slog.Handler      { return c }
func (c *captureLog) lines(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.recs {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// TestRequeuerEndsWhatCannotBePublished: a queued request the requeuer
// cannot encode ends failed with a readable reason, does not hold up the
// lost request behind it, and is not reported as re-published.
func TestRequeuerEndsWhatCannotBePublished(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	ctx := context.Background()
	poisoned := assignRequest(ten, "poisoned@example.com")
	poisoned.Assign.Metadata = json.RawMessage(`{"k":"` + strings.Repeat("x", 2000) + `"}`) // over the limit: Encode refuses it
	poisoned.SubmittedAt = time.Now().Add(-2 * time.Minute).UTC()
	lost := assignRequest(ten, "lost@example.com")
	lost.SubmittedAt = time.Now().Add(-time.Minute).UTC()
	for _, r := range []events.Request{poisoned, lost} {
		if _, err := e.DB.Submit(ctx, storage.Submission{Request: r}); err != nil {
			t.Fatal(err)
		}
	}
	logs := &captureLog{}
	ctxRun, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &worker.Requeuer{DB: e.DB, JS: e.JS, Log: slog.New(logs), Interval: 50 * time.Millisecond, Grace: 10 * time.Second}
	runErr := make(chan error, 1)
	go func() { runErr <- q.Run(ctxRun) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("requeuer: %v", err)
		}
	}()
	e.WaitApplied(lost.ID)
	time.Sleep(300 * time.Millisecond) // a few more sweeps
	rec, err := e.DB.Request(ctx, poisoned.ID, ten.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != "failed" || rec.Result == nil || !strings.Contains(rec.Result.Detail, "could not be queued") ||
		!strings.Contains(rec.Result.Detail, "1024 bytes") {
		t.Errorf("poisoned request: %s %+v", rec.Status, rec.Result)
	}
	republished := logs.lines("re-published")
	if len(republished) != 1 || !strings.Contains(republished[0], "count=1") {
		t.Errorf("requeuer reported %q; want one line, count=1", republished)
	}
}

// TestMalformedMessageEndsItsRequest: a message the worker cannot decode
// but which names its request ends that request failed (dead-lettered)
// instead of leaving it queued forever.
func TestMalformedMessageEndsItsRequest(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	ctx := context.Background()
	r := assignRequest(ten, "malformed@example.com")
	if _, err := e.DB.Submit(ctx, storage.Submission{Request: r}); err != nil {
		t.Fatal(err)
	}
	bad := `{"id":"` + r.ID + `","op":"assign","customer_id":"` + ten.CustomerID + `","assign":{"subscription_id":"x"}}`
	if _, err := e.JS.Publish(ctx, events.RequestsSubject, []byte(bad), jetstream.WithMsgID(r.ID)); err != nil {
		t.Fatal(err)
	}
	seatdtest.WaitFor(t, 10*time.Second, "request ended", func() bool {
		rec, err := e.DB.Request(ctx, r.ID, ten.CustomerID)
		return err == nil && rec.Status == "failed"
	})
	rec, _ := e.DB.Request(ctx, r.ID, ten.CustomerID)
	if rec.Result.Code != events.CodeDeadLettered {
		t.Errorf("result %+v", rec.Result)
	}
}
