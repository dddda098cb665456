package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// EventTypes are the events an endpoint can subscribe to, Polar's names.
var EventTypes = []events.SeatEventType{events.SeatAssigned, events.SeatClaimedEvent, events.SeatRevokedEvent}

// Endpoint is a webhook endpoint as operators see it. The secret is not
// part of it: it is shown once, when created or rotated.
type Endpoint struct {
	ID             string     `json:"id"`
	OrganizationID string     `json:"organization_id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Enabled        bool       `json:"enabled"`
	DisabledAt     *time.Time `json:"disabled_at"`
	DisabledReason *string    `json:"disabled_reason"`
	CreatedAt      time.Time  `json:"created_at"`
	ModifiedAt     *time.Time `json:"modified_at"`
}

// Admin manages endpoints and deliveries: what seatctl webhook does.
type Admin struct {
	DB     *storage.DB
	Sealer Sealer
}

// ParseEvents checks a comma-separated list of event types; empty means
// every type.
func ParseEvents(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		out := make([]string, len(EventTypes))
		for i, t := range EventTypes {
			out[i] = string(t)
		}
		return out, nil
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(EventTypes, events.SeatEventType(s)) {
			return nil, events.Errorf(events.CodeInvalid, "unknown event type %q (want customer_seat.assigned, customer_seat.claimed or customer_seat.revoked)", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// CheckURL accepts absolute http(s) URLs with a host, without credentials
// or a fragment, of at most 2,048 characters.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || len(raw) > 2048:
		return events.Errorf(events.CodeInvalid, "url %q is not a valid URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return events.Errorf(events.CodeInvalid, "url must start with http:// or https://, not %q", raw)
	case u.Host == "" || u.Hostname() == "":
		return events.Errorf(events.CodeInvalid, "url %q has no host", raw)
	case u.User != nil:
		return events.Errorf(events.CodeInvalid, "url must not carry credentials")
	case u.Fragment != "":
		return events.Errorf(events.CodeInvalid, "url must not have a fragment")
	}
	return nil
}

func checkID(what, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return events.Errorf(events.CodeNotFound, "%s %s not found", what, id)
	}
	return nil
}

// Create adds an endpoint to an organization and returns it with its
// secret, which is never shown again.
func (a *Admin) Create(ctx context.Context, orgID, rawURL string, eventTypes []string) (Endpoint, string, error) {
	if err := errors.Join(checkID("organization", orgID), CheckURL(rawURL)); err != nil {
		return Endpoint{}, "", err
	}
	if len(eventTypes) == 0 {
		return Endpoint{}, "", events.Errorf(events.CodeInvalid, "an endpoint needs at least one event type")
	}
	for _, t := range eventTypes {
		if !slices.Contains(EventTypes, events.SeatEventType(t)) {
			return Endpoint{}, "", events.Errorf(events.CodeInvalid, "unknown event type %q (want customer_seat.assigned, customer_seat.claimed or customer_seat.revoked)", t)
		}
	}
	eventTypes = slices.Compact(slices.Sorted(slices.Values(eventTypes)))
	id, secret := uuid.NewString(), NewSecret()
	var ep Endpoint
	err := a.DB.Pool.QueryRow(ctx, `INSERT INTO webhook_endpoints (id, organization_id, url, events, secret_sealed)
		SELECT $1, o.id, $3, $4, $5 FROM organizations o WHERE o.id = $2
		RETURNING `+endpointColumns, id, orgID, rawURL, eventTypes, a.Sealer.Seal(id, secret)).Scan(endpointDest(&ep)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, "", events.Errorf(events.CodeNotFound, "organization %s not found", orgID)
	}
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("create webhook endpoint: %w", err)
	}
	return ep, secret, nil
}

const endpointColumns = `id, organization_id, url, events, enabled, disabled_at, disabled_reason, created_at, modified_at`

func endpointDest(ep *Endpoint) []any {
	return []any{&ep.ID, &ep.OrganizationID, &ep.URL, &ep.Events, &ep.Enabled, &ep.DisabledAt, &ep.DisabledReason, &ep.CreatedAt, &ep.ModifiedAt}
}

// List returns an organization's endpoints, oldest first.
func (a *Admin) List(ctx context.Context, orgID string) ([]Endpoint, error) {
	if err := checkID("organization", orgID); err != nil {
		return nil, err
	}
	var exists bool
	if err := a.DB.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)`, orgID).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, events.Errorf(events.CodeNotFound, "organization %s not found", orgID)
	}
	rows, err := a.DB.Pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, err
	}
	out := []Endpoint{}
	for rows.Next() {
		var ep Endpoint
		if err := rows.Scan(endpointDest(&ep)...); err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, rows.Err()
}

// Get returns one endpoint that is not deleted.
func (a *Admin) Get(ctx context.Context, id string) (Endpoint, error) {
	if err := checkID("webhook endpoint", id); err != nil {
		return Endpoint{}, err
	}
	var ep Endpoint
	err := a.DB.Pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE id = $1 AND deleted_at IS NULL`, id).Scan(endpointDest(&ep)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, events.Errorf(events.CodeNotFound, "webhook endpoint %s not found", id)
	}
	return ep, err
}

// update runs set on a live endpoint and returns the endpoint after it.
func (a *Admin) update(ctx context.Context, id, set string, args ...any) (Endpoint, error) {
	if err := checkID("webhook endpoint", id); err != nil {
		return Endpoint{}, err
	}
	var ep Endpoint
	err := a.DB.Pool.QueryRow(ctx, `UPDATE webhook_endpoints SET `+set+`, modified_at = now()
		WHERE id = $1 AND deleted_at IS NULL RETURNING `+endpointColumns, append([]any{id}, args...)...).Scan(endpointDest(&ep)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, events.Errorf(events.CodeNotFound, "webhook endpoint %s not found", id)
	}
	return ep, err
}

// RotateSecret gives the endpoint a new secret at once and returns it.
// Attempts from then on (retries included) are signed with the new one.
func (a *Admin) RotateSecret(ctx context.Context, id string) (Endpoint, string, error) {
	secret := NewSecret()
	ep, err := a.update(ctx, id, `secret_sealed = $2`, a.Sealer.Seal(id, secret))
	if err != nil {
		return Endpoint{}, "", err
	}
	return ep, secret, nil
}

// Enable re-enables an endpoint. Failures before now no longer count
// toward disabling it again. Deliveries skipped while it was disabled stay
// skipped; Redeliver sends them.
func (a *Admin) Enable(ctx context.Context, id string) (Endpoint, error) {
	return a.update(ctx, id, `enabled = true, enabled_at = now(), disabled_at = NULL, disabled_reason = NULL`)
}

// Delete removes an endpoint: nothing more is sent to it, its pending
// deliveries are skipped. Its delivery log stays in the database.
func (a *Admin) Delete(ctx context.Context, id string) error {
	if err := checkID("webhook endpoint", id); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, a.DB.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, modified_at = now()
			WHERE id = $1 AND deleted_at IS NULL`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return events.Errorf(events.CodeNotFound, "webhook endpoint %s not found", id)
		}
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'skipped', completed_at = now(),
			last_error = 'endpoint deleted', leased_until = NULL WHERE endpoint_id = $1 AND status = 'pending'`, id)
		return err
	})
}

// Delivery is one event's delivery to one endpoint, with its attempts.
type Delivery struct {
	ID             string          `json:"id"` // the webhook-id header
	EndpointID     string          `json:"endpoint_id"`
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	SeatID         string          `json:"seat_id"`
	SeatVersion    int             `json:"seat_version"`
	Status         string          `json:"status"` // pending, succeeded, failed, skipped
	Attempts       int             `json:"attempts"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at"`
	LastStatusCode *int            `json:"last_status_code"`
	LastError      *string         `json:"last_error"`
	CreatedAt      time.Time       `json:"created_at"`
	CompletedAt    *time.Time      `json:"completed_at"`
	AttemptLog     []AttemptRecord `json:"attempt_log"`
}

// AttemptRecord is one HTTP attempt of a delivery.
type AttemptRecord struct {
	StartedAt  time.Time `json:"started_at"`
	DurationMS int       `json:"duration_ms"`
	StatusCode *int      `json:"status_code"`
	Error      *string   `json:"error"`
	Response   *string   `json:"response"`
}

// Deliveries returns an endpoint's most recent deliveries, newest first,
// each with its attempts; status, when not empty, filters them.
func (a *Admin) Deliveries(ctx context.Context, endpointID, status string, limit int) ([]Delivery, error) {
	if err := checkID("webhook endpoint", endpointID); err != nil {
		return nil, err
	}
	switch status {
	case "", "pending", "succeeded", "failed", "skipped":
	default:
		return nil, events.Errorf(events.CodeInvalid, "status must be pending, succeeded, failed or skipped, not %q", status)
	}
	if limit <= 0 || limit > 1000 {
		return nil, events.Errorf(events.CodeInvalid, "limit must be between 1 and 1000")
	}
	var exists bool
	if err := a.DB.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)`, endpointID).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, events.Errorf(events.CodeNotFound, "webhook endpoint %s not found", endpointID)
	}
	return a.queryDeliveries(ctx, a.DB.Pool, `d.endpoint_id = $1 AND ($2 = '' OR d.status = $2)
		ORDER BY d.created_at DESC, d.seat_version DESC LIMIT $3`, endpointID, status, limit)
}

// queryDeliveries loads the deliveries matching cond, with their attempts.
// queryer is a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (a *Admin) queryDeliveries(ctx context.Context, q queryer, cond string, args ...any) ([]Delivery, error) {
	rows, err := q.Query(ctx, `SELECT d.id, d.endpoint_id, d.event_id, e.type, d.seat_id, d.seat_version, d.status,
			d.attempts, CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, d.last_status_code, d.last_error,
			d.created_at, d.completed_at
		FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
		WHERE `+cond, args...)
	if err != nil {
		return nil, err
	}
	out := []Delivery{}
	index := map[string]int{}
	for rows.Next() {
		var d Delivery
		if err := rows.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.Type, &d.SeatID, &d.SeatVersion, &d.Status,
			&d.Attempts, &d.NextAttemptAt, &d.LastStatusCode, &d.LastError, &d.CreatedAt, &d.CompletedAt); err != nil {
			return nil, err
		}
		d.AttemptLog = []AttemptRecord{}
		index[d.ID] = len(out)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]string, len(out))
	for i, d := range out {
		ids[i] = d.ID
	}
	rows, err = q.Query(ctx, `SELECT delivery_id, started_at, duration_ms, status_code, error, response
		FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var r AttemptRecord
		if err := rows.Scan(&id, &r.StartedAt, &r.DurationMS, &r.StatusCode, &r.Error, &r.Response); err != nil {
			return nil, err
		}
		out[index[id]].AttemptLog = append(out[index[id]].AttemptLog, r)
	}
	return out, rows.Err()
}

// Redeliver queues a delivery again, with the same webhook-id and body and
// a fresh budget of attempts. Its endpoint must be enabled; a delivery
// still pending is left alone.
func (a *Admin) Redeliver(ctx context.Context, deliveryID string) (Delivery, error) {
	if err := checkID("webhook delivery", deliveryID); err != nil {
		return Delivery{}, err
	}
	var endpointID, status string
	var enabled bool
	var deleted *time.Time
	err := a.DB.Pool.QueryRow(ctx, `SELECT d.endpoint_id, d.status, e.enabled, e.deleted_at
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1`, deliveryID).
		Scan(&endpointID, &status, &enabled, &deleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Delivery{}, events.Errorf(events.CodeNotFound, "webhook delivery %s not found", deliveryID)
	case err != nil:
		return Delivery{}, err
	case deleted != nil:
		return Delivery{}, events.Errorf(events.CodeConflict, "webhook endpoint %s is deleted", endpointID)
	case !enabled:
		return Delivery{}, events.Errorf(events.CodeConflict, "webhook endpoint %s is disabled; enable it first (seatctl webhook enable %s)", endpointID, endpointID)
	case status == "pending":
		return Delivery{}, events.Errorf(events.CodeConflict, "webhook delivery %s is still pending", deliveryID)
	}
	// Read back in the same transaction: the answer is the delivery as
	// queued again, not whatever a dispatcher made of it a moment later.
	var d Delivery
	err = pgx.BeginFunc(ctx, a.DB.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
			next_attempt_at = now(), leased_until = NULL, completed_at = NULL WHERE id = $1 AND status <> 'pending'`, deliveryID); err != nil {
			return err
		}
		d, err = a.delivery(ctx, tx, deliveryID)
		return err
	})
	return d, err
}

// RedeliverFailed queues again every failed or skipped delivery of an
// enabled endpoint and returns how many.
func (a *Admin) RedeliverFailed(ctx context.Context, endpointID string) (int64, error) {
	ep, err := a.Get(ctx, endpointID)
	if err != nil {
		return 0, err
	}
	if !ep.Enabled {
		return 0, events.Errorf(events.CodeConflict, "webhook endpoint %s is disabled; enable it first (seatctl webhook enable %s)", endpointID, endpointID)
	}
	tag, err := a.DB.Pool.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
		next_attempt_at = now(), leased_until = NULL, completed_at = NULL
		WHERE endpoint_id = $1 AND status IN ('failed', 'skipped')`, endpointID)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (a *Admin) delivery(ctx context.Context, q queryer, id string) (Delivery, error) {
	ds, err := a.queryDeliveries(ctx, q, `d.id = $1`, id)
	if err != nil {
		return Delivery{}, err
	}
	if len(ds) == 0 {
		return Delivery{}, events.Errorf(events.CodeNotFound, "webhook delivery %s not found", id)
	}
	return ds[0], nil
}
