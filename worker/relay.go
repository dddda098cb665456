package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
)

// Relay publishes the outbox (seat events and mail requests) to JetStream.
// Only one replica relays at a time (storage holds a lock), so each seat's
// events reach the stream in the order they were committed.
type Relay struct {
	DB            *storage.DB
	JS            jetstream.JetStream
	Log           *slog.Logger
	OutboxWritten <-chan struct{} // a commit happened; relay now rather than at the next tick
	Tick          time.Duration   // idle poll interval; default 250ms
}

// Run relays until ctx is cancelled.
func (r *Relay) Run(ctx context.Context) error {
	tick := r.Tick
	if tick <= 0 {
		tick = 250 * time.Millisecond
	}
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		n, err := r.DB.RelayOutbox(ctx, 500, r.publish)
		if err != nil && ctx.Err() == nil {
			log.Warn("outbox relay", "err", err)
		}
		if n == 500 {
			continue // more waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.OutboxWritten:
		case <-t.C:
		}
	}
}

func (r *Relay) publish(ctx context.Context, msgs []storage.OutboxMessage) error {
	out := make([]stream.Msg, len(msgs))
	for i, m := range msgs {
		out[i] = stream.Msg{Subject: m.Subject, ID: m.MsgID, Data: m.Payload}
	}
	return stream.PublishAll(ctx, r.JS, out, nil)
}

// Requeuer re-publishes requests that the ledger holds as queued but whose
// message is no longer in the stream: the stream lost it (a power cut
// within the fsync interval) or the ingress died between recording and
// publishing. The same request id means the same Nats-Msg-Id and the same
// ledger row, so a request that was in fact applied is never applied twice.
type Requeuer struct {
	DB       *storage.DB
	JS       jetstream.JetStream
	Log      *slog.Logger
	Interval time.Duration // default half of Grace, at most 30s
	Grace    time.Duration // a request younger than this is left alone; default 1m
}

// Run sweeps until ctx is cancelled.
func (q *Requeuer) Run(ctx context.Context) error {
	interval, grace := q.Interval, q.Grace
	if grace <= 0 {
		grace = time.Minute
	}
	if interval <= 0 {
		interval = min(grace/2, 30*time.Second)
	}
	log := q.Log
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := q.sweep(ctx, grace)
		if err != nil && ctx.Err() == nil {
			log.Warn("requeue sweep", "err", err)
		}
		if n > 0 {
			log.Warn("re-published queued requests missing from the stream", "count", n)
		}
	}
}

func (q *Requeuer) sweep(ctx context.Context, grace time.Duration) (int, error) {
	st, err := q.JS.Stream(ctx, events.RequestsStream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	// With work-queue retention the oldest message in the stream is the
	// oldest one not yet applied: a queued request recorded well before it
	// cannot still be waiting in the stream.
	cutoff := time.Now().Add(-grace)
	if info.State.Msgs > 0 && info.State.FirstTime.Add(-grace).Before(cutoff) {
		cutoff = info.State.FirstTime.Add(-grace)
	}
	reqs, err := q.DB.Queued(ctx, cutoff, 1000)
	if err != nil {
		return 0, err
	}
	msgs := make([]stream.Msg, 0, len(reqs))
	for _, r := range reqs {
		m, err := stream.RequestMsg(r)
		if err != nil {
			// It can never be published: end it with its reason instead of
			// skipping it on every sweep, so it is not queued forever.
			if _, ferr := q.DB.Fail(ctx, r, events.CodeInvalid, "The request could not be queued: "+err.Error()); ferr != nil {
				return 0, ferr
			}
			q.log().Error("queued request cannot be published; recorded as failed", "request_id", r.ID, "err", err)
			continue
		}
		msgs = append(msgs, m)
	}
	published := 0
	err = stream.PublishAll(ctx, q.JS, msgs, func(_ int, ack *jetstream.PubAck) {
		if !ack.Duplicate { // the stream held it after all: nothing was re-published
			published++
		}
	})
	if err != nil {
		return published, err
	}
	return published, nil
}

func (q *Requeuer) log() *slog.Logger {
	if q.Log == nil {
		return slog.Default()
	}
	return q.Log
}

// Expirer revokes pending seats whose invitation expired, when the
// deployment chose SEATD_EXPIRED_INVITATIONS=release.
type Expirer struct {
	DB            *storage.DB
	Log           *slog.Logger
	Interval      time.Duration // default 1m
	OutboxWritten chan<- struct{}
}

// Run sweeps until ctx is cancelled.
func (e *Expirer) Run(ctx context.Context) error {
	interval := e.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	log := e.Log
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := e.DB.ReleaseExpired(ctx, time.Now(), 500)
		if err != nil && ctx.Err() == nil {
			log.Warn("release expired invitations", "err", err)
		}
		if n > 0 {
			log.Info("released seats with expired invitations", "count", n)
			if e.OutboxWritten != nil {
				select {
				case e.OutboxWritten <- struct{}{}:
				default:
				}
			}
			if n == 500 {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
