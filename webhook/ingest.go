package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
)

// Consumer is the durable JetStream consumer on events.SeatEventsStream
// that every webhook replica shares.
const Consumer = "seatd-webhooks"

// SetupConsumer creates or updates the durable consumer. It is safe to call
// from many replicas at once. A consumer created for the first time starts
// at the beginning of the stream; events older than an endpoint are not
// sent to it (see ingest).
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

// payload is the HTTP body of a webhook, Polar's shape. Data is the
// event's CustomerSeat verbatim, so every field the stream carries reaches
// the receiver.
type payload struct {
	Type      events.SeatEventType `json:"type"`
	Timestamp time.Time            `json:"timestamp"`
	Data      json.RawMessage      `json:"data"`
}

// errUndecodable marks a stream message that can never become a webhook.
var errUndecodable = errors.New("undecodable seat event")

// ingest records one seat event and queues one delivery for each enabled
// endpoint of the seat's organization that subscribes to its type and
// existed when the event happened. It is idempotent: the event id is the
// key, so a redelivered message (or the same event published twice) adds
// nothing, and a delivery's id, the webhook-id, is fixed on first sight.
// It returns how many deliveries it queued.
func (r *Runner) ingest(ctx context.Context, data []byte) (int64, error) {
	var ev events.SeatEvent
	var raw struct {
		Data json.RawMessage `json:"data"`
	}
	if err := errors.Join(json.Unmarshal(data, &ev), json.Unmarshal(data, &raw)); err != nil {
		return 0, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	if _, err := uuid.Parse(ev.ID); err != nil {
		return 0, fmt.Errorf("%w: event id %q", errUndecodable, ev.ID)
	}
	if _, err := uuid.Parse(ev.Data.ID); err != nil {
		return 0, fmt.Errorf("%w: seat id %q", errUndecodable, ev.Data.ID)
	}
	if ev.Version < 1 || ev.Timestamp.IsZero() {
		return 0, fmt.Errorf("%w: version %d, timestamp %v", errUndecodable, ev.Version, ev.Timestamp)
	}
	switch ev.Type {
	case events.SeatAssigned, events.SeatClaimedEvent, events.SeatRevokedEvent:
	default:
		return 0, fmt.Errorf("%w: type %q", errUndecodable, ev.Type)
	}
	body, err := json.Marshal(payload{Type: ev.Type, Timestamp: ev.Timestamp, Data: raw.Data})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	var queued int64
	err = pgx.BeginFunc(ctx, r.cfg.DB.Pool, func(tx pgx.Tx) error {
		// The pool's buyer names the organization; a seat never changes pool.
		var org *string
		err := tx.QueryRow(ctx, `SELECT c.organization_id FROM customers c
			WHERE c.id = (SELECT customer_id FROM subscriptions WHERE id = $1
			              UNION ALL SELECT customer_id FROM orders WHERE id = $2 LIMIT 1)`,
			ev.Data.SubscriptionID, ev.Data.OrderID).Scan(&org)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO webhook_events (id, seat_id, version, type, organization_id, body)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
			ev.ID, ev.Data.ID, ev.Version, string(ev.Type), org, body)
		if err != nil || tag.RowsAffected() == 0 || org == nil {
			return err // seen before (its deliveries exist), or no organization
		}
		tag, err = tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, seat_id, seat_version)
			SELECT gen_random_uuid(), e.id, $2, $3, $4 FROM webhook_endpoints e
			WHERE e.organization_id = $1 AND e.enabled AND e.deleted_at IS NULL
			  AND $5 = ANY (e.events) AND e.created_at <= $6
			ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
			*org, ev.ID, ev.Data.ID, ev.Version, string(ev.Type), ev.Timestamp)
		queued = tag.RowsAffected()
		return err
	})
	return queued, err
}

// runIngest moves seat events from the stream into Postgres until ctx is
// cancelled. A message is acknowledged only after its rows are committed,
// so a replica killed at any moment loses nothing.
func (r *Runner) runIngest(ctx context.Context, cons jetstream.Consumer) error {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, r.cfg.FetchWait)
		batch, err := cons.Fetch(64, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("fetching seat events failed; retrying", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		for msg := range batch.Messages() {
			r.handleEvent(ctx, msg)
		}
		cancel()
	}
	return nil
}

func (r *Runner) handleEvent(ctx context.Context, msg jetstream.Msg) {
	// Finish the message in hand even when stopping: it is short.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	n, err := r.ingest(ictx, msg.Data())
	switch {
	case errors.Is(err, errUndecodable):
		r.log.Error("seat event cannot become a webhook; dropping it", "error", err)
		_ = msg.Term()
	case err != nil:
		r.log.Warn("cannot record seat event; it will come again", "error", err)
		_ = msg.NakWithDelay(time.Second)
	default:
		if err := msg.DoubleAck(ictx); err != nil {
			r.log.Warn("could not acknowledge seat event; it will come again, harmlessly", "error", err)
		}
		if n > 0 {
			r.poke()
		}
	}
}
