package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// Consumer is the durable JetStream consumer on events.SeatEventsStream
// that every webhook replica shares.
const Consumer = "seatd-webhooks"

// SetupConsumer creates or updates the durable consumer. It is safe to call
// from many replicas at once. A consumer created for the first time starts
// at the beginning of the stream; events older than an endpoint are not
// sent to it (see ingestSQL).
func SetupConsumer(ctx context.Context, js jetstream.JetStream, ackWait time.Duration) (jetstream.Consumer, error) {
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	c, err := js.CreateOrUpdateConsumer(ctx, events.SeatEventsStream, jetstream.ConsumerConfig{
		Durable: Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
		MaxDeliver: -1, MaxAckPending: 1000, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", Consumer, err)
	}
	return c, nil
}

// APIVersion is the Polar API version whose webhook payloads seatd's
// match: Polar's SDK 1.0.1 types every payload of API version 2026-10 with
// a required api_version, so a typed receiver reads it.
const APIVersion = "2026-10"

// payload is the HTTP body of a webhook, Polar's shape. Data is the
// event's CustomerSeat verbatim, so every field the stream carries reaches
// the receiver.
type payload struct {
	Type       events.SeatEventType `json:"type"`
	Timestamp  time.Time            `json:"timestamp"`
	APIVersion string               `json:"api_version"`
	Data       json.RawMessage      `json:"data"`
}

// errUndecodable marks a stream message that can never become a webhook.
var errUndecodable = errors.New("undecodable seat event")

// seatEvent is a decoded seat event and the webhook body made of it.
type seatEvent struct {
	events.SeatEvent
	body []byte
}

// decode checks a stream message and builds the body every endpoint and
// attempt will get, byte for byte.
func decode(data []byte) (seatEvent, error) {
	var ev seatEvent
	var raw struct {
		Data json.RawMessage `json:"data"`
	}
	if err := errors.Join(json.Unmarshal(data, &ev.SeatEvent), json.Unmarshal(data, &raw)); err != nil {
		return ev, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	if _, err := uuid.Parse(ev.ID); err != nil {
		return ev, fmt.Errorf("%w: event id %q", errUndecodable, ev.ID)
	}
	if _, err := uuid.Parse(ev.Data.ID); err != nil {
		return ev, fmt.Errorf("%w: seat id %q", errUndecodable, ev.Data.ID)
	}
	for _, id := range []*string{ev.Data.SubscriptionID, ev.Data.OrderID} {
		if id != nil {
			if _, err := uuid.Parse(*id); err != nil {
				return ev, fmt.Errorf("%w: pool id %q", errUndecodable, *id)
			}
		}
	}
	if ev.Version < 1 || ev.Timestamp.IsZero() {
		return ev, fmt.Errorf("%w: version %d, timestamp %v", errUndecodable, ev.Version, ev.Timestamp)
	}
	switch ev.Type {
	case events.SeatAssigned, events.SeatClaimedEvent, events.SeatRevokedEvent:
	default:
		return ev, fmt.Errorf("%w: type %q", errUndecodable, ev.Type)
	}
	var err error
	if ev.body, err = json.Marshal(payload{Type: ev.Type, Timestamp: ev.Timestamp, APIVersion: APIVersion, Data: raw.Data}); err != nil {
		return ev, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	return ev, nil
}

// ingestSQL records one seat event and queues one delivery for each
// enabled endpoint of the seat's organization that subscribes to its type
// and existed when the event happened; the pool's buyer names the
// organization (a seat never changes pool). It is idempotent: the event id
// is the key, so a redelivered message (or the same event published twice)
// adds nothing, and a delivery's id, the webhook-id, is fixed on first
// sight. Its row count is the number of deliveries queued.
const ingestSQL = `
WITH org AS (
	SELECT c.organization_id AS id FROM customers c
	WHERE c.id = (SELECT customer_id FROM subscriptions WHERE id = $1
	              UNION ALL SELECT customer_id FROM orders WHERE id = $2 LIMIT 1)
), ev AS (
	INSERT INTO webhook_events (id, seat_id, version, type, organization_id, body)
	VALUES ($3, $4, $5, $6, (SELECT id FROM org), $7)
	ON CONFLICT (id) DO NOTHING
	RETURNING organization_id
)
INSERT INTO webhook_deliveries (id, endpoint_id, event_id, seat_id, seat_version)
SELECT gen_random_uuid(), e.id, $3, $4, $5 FROM webhook_endpoints e JOIN ev ON e.organization_id = ev.organization_id
WHERE e.enabled AND e.deleted_at IS NULL AND $6 = ANY (e.events) AND e.created_at <= $8
ON CONFLICT (endpoint_id, event_id) DO NOTHING`

// ingest records evs in one transaction and one round trip, and returns
// how many deliveries it queued.
func (r *Runner) ingest(ctx context.Context, evs []seatEvent) (int64, error) {
	var queued int64
	err := pgx.BeginFunc(ctx, r.cfg.DB.Pool, func(tx pgx.Tx) error {
		var batch pgx.Batch
		for _, ev := range evs {
			batch.Queue(ingestSQL, ev.Data.SubscriptionID, ev.Data.OrderID, ev.ID, ev.Data.ID, ev.Version,
				string(ev.Type), ev.body, ev.Timestamp).Exec(func(tag pgconn.CommandTag) error {
				queued += tag.RowsAffected()
				return nil
			})
		}
		return tx.SendBatch(ctx, &batch).Close()
	})
	return queued, err
}

// ingestBatch is the most messages recorded in one transaction.
const ingestBatch = 64

// runIngest moves seat events from the stream into Postgres until ctx is
// cancelled: the messages at hand, up to ingestBatch, in one transaction.
// A message is acknowledged only after its rows are committed, so a replica
// killed at any moment loses nothing.
func (r *Runner) runIngest(ctx context.Context, cons jetstream.Consumer) error {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, r.cfg.FetchWait)
		batch, err := cons.Fetch(ingestBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("fetching seat events failed; retrying", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		msgs := batch.Messages()
		for msg := range msgs {
			group := []jetstream.Msg{msg}
		more:
			for len(group) < ingestBatch {
				select {
				case m, ok := <-msgs:
					if !ok {
						break more
					}
					group = append(group, m)
				default:
					break more
				}
			}
			r.handleEvents(ctx, group)
		}
		cancel()
	}
	return nil
}

func (r *Runner) handleEvents(ctx context.Context, msgs []jetstream.Msg) {
	// Finish the messages in hand even when stopping: it is short.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var good []jetstream.Msg
	var evs []seatEvent
	for _, msg := range msgs {
		ev, err := decode(msg.Data())
		if err != nil {
			r.log.Error("seat event cannot become a webhook; dropping it", "error", err)
			_ = msg.Term()
			continue
		}
		good, evs = append(good, msg), append(evs, ev)
	}
	if len(evs) == 0 {
		return
	}
	queued, err := r.ingest(ictx, evs)
	if err != nil && !storage.IsTransient(err) {
		// One bad event must not hold up its neighbours: record each
		// alone, and drop only the one that fails the same way again.
		queued, err = 0, nil
		for i, ev := range evs {
			n, err := r.ingest(ictx, []seatEvent{ev})
			switch {
			case err == nil:
				queued += n
				_ = good[i].Ack()
			case storage.IsTransient(err):
				_ = good[i].NakWithDelay(time.Second)
			default:
				r.log.Error("seat event cannot be recorded; dropping it", "event_id", ev.ID, "error", err)
				_ = good[i].Term()
			}
		}
		good = nil
	}
	for _, msg := range good {
		if err != nil {
			_ = msg.NakWithDelay(time.Second)
		} else {
			// A lost ack brings the message back, and ingest adds nothing
			// the second time.
			_ = msg.Ack()
		}
	}
	if err != nil {
		r.log.Warn("cannot record seat events; they will come again", "events", len(evs), "error", err)
		return
	}
	if queued > 0 {
		r.poke()
	}
}
