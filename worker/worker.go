package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/telemetry"
)

// Config configures a Worker. Zero values pick sensible defaults.
type Config struct {
	DB       *storage.DB
	NC       *nats.Conn
	JS       jetstream.JetStream
	Settings storage.Settings
	Log      *slog.Logger

	BatchSize     int           // requests per transaction; default 512
	Concurrency   int           // batches applied at once; default 2
	MaxDeliveries int           // deliveries before a failing request is dead-lettered; default 10
	BackoffBase   time.Duration // first retry delay; default 250ms
	BackoffMax    time.Duration // longest retry delay; default 30s

	// OutboxWritten, when set, is poked after each commit so the outbox relay
	// publishes without waiting for its next tick.
	OutboxWritten chan<- struct{}
}

// Worker consumes the requests stream.
type Worker struct {
	cfg Config
	log *slog.Logger
}

// New returns a Worker.
func New(cfg Config) *Worker {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 10
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 250 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Worker{cfg: cfg, log: cfg.Log.With("role", "worker")}
}

// Run consumes until ctx is cancelled, then stops pulling, finishes the
// messages it already holds and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = w.cfg.JS.Consumer(ctx, events.RequestsStream, events.WorkerConsumer)
		if err == nil {
			break
		}
		w.log.Warn("waiting for the requests consumer", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	// A pull request that reaches a consumer still electing its leader
	// (a cluster just formed, or a node just lost) is lost: a short expiry
	// notices that and pulls again within seconds, not half a minute.
	it, err := cons.Messages(jetstream.PullMaxMessages(2*w.cfg.BatchSize), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("worker: consume: %w", err)
	}
	// Up to Concurrency batches are applied at once: one is decided and
	// written while another waits for its commit or its pools' row locks
	// (batches on the same pool take its lock in turn, as two worker
	// processes' would). A batch is gathered only once an applier is free,
	// so it takes every message that arrived meanwhile and none waits
	// behind a busy applier while another is idle.
	free := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	draining := false
	for {
		free <- struct{}{}
		var first jetstream.Msg
		if draining {
			first, err = it.Next()
		} else {
			first, err = it.Next(jetstream.NextContext(ctx))
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case err != nil && ctx.Err() != nil && !draining:
			// Stop pulling; Next now hands out what was already fetched,
			// then reports the iterator closed.
			it.Drain()
			draining = true
			<-free
			continue
		case err != nil:
			w.log.Warn("next message", "err", err)
			<-free
			continue
		}
		batch := []jetstream.Msg{first}
		for len(batch) < w.cfg.BatchSize {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-free }()
			// Work in hand is finished even when ctx is cancelled meanwhile.
			w.handle(context.WithoutCancel(ctx), batch)
		}()
	}
}

type item struct {
	msg        jetstream.Msg
	req        events.Request
	deliveries uint64
	span       trace.Span
}

// handle applies a batch set-based in one transaction; if that fails, it
// falls back to one transaction per request so that one bad request cannot
// hold up the rest.
func (w *Worker) handle(ctx context.Context, msgs []jetstream.Msg) {
	items := make([]item, 0, len(msgs))
	for _, m := range msgs {
		var n uint64 = 1
		if md, err := m.Metadata(); err == nil {
			n = md.NumDelivered
		}
		req, err := events.DecodeRequest(m.Data())
		if err != nil {
			// If the message names a request, that request ends failed
			// (dead-lettered) in the ledger, not queued forever.
			w.deadLetter(ctx, m, salvage(m.Data()), n, err.Error())
			continue
		}
		items = append(items, item{msg: m, req: req, deliveries: n})
		w.observe(ctx, &items[len(items)-1])
	}
	if len(items) == 0 {
		return
	}
	telemetry.Batch(len(items))
	defer func() {
		for _, it := range items {
			it.span.End()
		}
	}()
	// Take pool locks in one global order, so two workers' batches wait for
	// each other instead of deadlocking. The sort is stable: requests for
	// one pool keep their queue order.
	sort.SliceStable(items, func(i, j int) bool { return items[i].req.LockKey() < items[j].req.LockKey() })
	// Set-based first, even for one request: fewer round trips than the
	// serial path.
	err := w.apply(ctx, items, w.cfg.DB.Apply)
	if err == nil {
		return
	}
	if storage.IsTransient(err) {
		// Postgres is away or busy: retrying each request now would
		// only multiply the failures. Try the whole batch again later.
		delay := stream.Backoff(w.cfg.BackoffBase, w.cfg.BackoffMax, items[0].deliveries)
		w.log.Warn("batch failed transiently, will retry", "size", len(items), "retry_in", delay, "err", err)
		for _, it := range items {
			_ = it.msg.NakWithDelay(delay)
		}
		return
	}
	w.log.Debug("batch failed, retrying one by one", "size", len(items), "err", err)
	for _, it := range items {
		if err := w.apply(ctx, []item{it}, w.cfg.DB.ApplySerial); err != nil {
			w.retry(ctx, it, err)
		}
	}
}

type applyFunc func(context.Context, storage.Settings, []events.Request) ([]events.Result, error)

// apply applies items with fn (set-based for a batch, serial for the
// one-by-one fallback), then replies and acks.
func (w *Worker) apply(ctx context.Context, items []item, fn applyFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	reqs := make([]events.Request, len(items))
	for i, it := range items {
		reqs[i] = it.req
	}
	results, err := fn(ctx, w.cfg.Settings, reqs)
	if err != nil {
		return err
	}
	w.poke()
	for i, it := range items {
		w.reply(it.req, results[i])
		w.answered(it, results[i])
		if err := it.msg.Ack(); err != nil {
			// Not fatal: the redelivery finds the outcome in the ledger.
			w.log.Warn("ack", "request_id", it.req.ID, "err", err)
		}
	}
	return nil
}

// retry schedules another delivery of a request that failed, or gives up on
// it. Transient failures never give up: Postgres coming back must not find
// its requests dead-lettered.
func (w *Worker) retry(ctx context.Context, it item, err error) {
	if !storage.IsTransient(err) && it.deliveries >= uint64(w.cfg.MaxDeliveries) {
		w.deadLetter(ctx, it.msg, &it.req, it.deliveries, err.Error())
		return
	}
	delay := stream.Backoff(w.cfg.BackoffBase, w.cfg.BackoffMax, it.deliveries)
	w.log.Warn("request failed, will retry", "request_id", it.req.ID, "deliveries", it.deliveries,
		"retry_in", delay, "transient", storage.IsTransient(err), "err", err)
	if err := it.msg.NakWithDelay(delay); err != nil {
		w.log.Warn("nak", "request_id", it.req.ID, "err", err)
	}
}

// deadLetter moves a message to the dead-letter stream and records its
// request as failed, then acks it. If any step fails the message is nak'ed
// and the next delivery tries again, so nothing is dropped.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, req *events.Request, deliveries uint64, reason string) {
	dl := events.DeadLetter{Request: m.Data(), Reason: truncate(reason, 2000), Deliveries: deliveries, FailedAt: time.Now().UTC()}
	if req != nil {
		dl.RequestID = req.ID
	}
	data, _ := json.Marshal(dl)
	// One dead letter per message: a replayed request that fails again is
	// a new message with a new sequence, and gets a new dead letter.
	msgID := "dlq-" + dl.RequestID
	if md, err := m.Metadata(); err == nil {
		msgID = fmt.Sprintf("dlq-%s-%d", dl.RequestID, md.Sequence.Stream)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := stream.Publish(pctx, w.cfg.JS, stream.Msg{Subject: events.DeadLetterSubject, ID: msgID, Data: data}); err != nil {
		w.log.Error("dead-letter publish failed; will retry", "err", err)
		_ = m.NakWithDelay(w.cfg.BackoffMax)
		return
	}
	if req != nil {
		res, err := w.cfg.DB.Fail(pctx, *req, events.CodeDeadLettered, "The request could not be applied and was moved to the dead-letter queue")
		if err != nil {
			w.log.Error("recording dead letter failed; will retry", "request_id", req.ID, "err", err)
			_ = m.NakWithDelay(w.cfg.BackoffMax)
			return
		}
		w.reply(*req, res)
		telemetry.Outcome(string(req.Op), string(res.Code), req.SubmittedAt)
	}
	telemetry.DeadLettered()
	w.log.Error("request dead-lettered", "request_id", dl.RequestID, "deliveries", deliveries, "reason", dl.Reason)
	if err := m.Term(); err != nil {
		w.log.Warn("term", "err", err)
	}
}

func (w *Worker) reply(req events.Request, res events.Result) {
	if req.ReplyTo == "" || w.cfg.NC == nil {
		return
	}
	data, err := json.Marshal(res)
	if err != nil {
		return
	}
	// Best effort: a caller who stopped waiting polls the ledger instead.
	_ = w.cfg.NC.Publish(req.ReplyTo, data)
}

func (w *Worker) poke() {
	if w.cfg.OutboxWritten == nil {
		return
	}
	select {
	case w.cfg.OutboxWritten <- struct{}{}:
	default:
	}
}

// salvage recovers who a malformed message was from, when it says so
// legibly enough for the ledger; nil otherwise.
func salvage(data []byte) *events.Request {
	var r events.Request
	if json.Unmarshal(data, &r) != nil {
		return nil
	}
	if _, err := uuid.Parse(r.ID); err != nil || len(r.ID) != 36 {
		return nil
	}
	return &events.Request{ID: r.ID, Op: r.Op, CustomerID: r.CustomerID, OrganizationID: r.OrganizationID, TokenHash: r.TokenHash,
		ReplyTo: r.ReplyTo}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
