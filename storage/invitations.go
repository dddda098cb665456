package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/seatd/seatd/events"
)

// DeliveryState is where an invitation's email stands in the delivery
// ledger (invitations.delivery_state).
type DeliveryState string

const (
	// DeliveryQueued: waiting for a mailer, or for the retry of a
	// temporary failure.
	DeliveryQueued DeliveryState = "queued"
	// DeliverySending: a mailer has started an SMTP attempt and has not
	// recorded its outcome. Found by a mailer other than the one that set
	// it, it means that mailer died mid-attempt.
	DeliverySending DeliveryState = "sending"
	// DeliverySent: the SMTP server accepted the message. Final.
	DeliverySent DeliveryState = "sent"
	// DeliveryFailed: a permanent SMTP failure, or too many temporary ones.
	// Final; last_error says why.
	DeliveryFailed DeliveryState = "failed"
	// DeliveryCancelled: the invitation died before it was sent (seat
	// revoked or claimed, invitation superseded by a resend, or expired).
	// Final.
	DeliveryCancelled DeliveryState = "cancelled"
)

var (
	// ErrDeliveryBusy means another mailer is delivering the invitation
	// right now; try again later.
	ErrDeliveryBusy = errors.New("invitation is being delivered by another mailer")
	// ErrNotDeliverable means the invitation must not be (or need not be)
	// sent any more. The error's text says why.
	ErrNotDeliverable = errors.New("invitation not deliverable")
)

// InvitationMail is everything the mailer needs to write one invitation
// email. Nonce is secret material: the claim token derives from it.
type InvitationMail struct {
	InvitationID string
	SeatID       string
	Nonce        []byte
	// TokenHash is the seat's invitation_token_hash: the SHA-256 that the
	// token derived from Nonce must have for the link to work.
	TokenHash    []byte
	ExpiresAt    time.Time
	To           string // seats.email, else the seat customer's email; empty if neither
	ProductName  string
	Organization string
	InviterEmail string // empty when the inviter is unknown
	State        DeliveryState
	Attempts     int // SMTP attempts started before this one
}

// Delivery is one mailer's exclusive claim on delivering an invitation,
// from StartDelivery until Close. Exclusivity comes from a session advisory
// lock held on a dedicated connection: if the mailer dies the connection
// closes and Postgres releases the lock at once, so a crashed mailer never
// blocks the redelivery, while two live mailers never talk to the SMTP
// server about the same invitation at the same time (which would happen if
// JetStream redelivered a message whose AckWait ran out mid-send).
type Delivery struct {
	Mail InvitationMail

	db     *DB
	conn   *pgxpool.Conn
	lockID string // the invitation id the advisory lock is keyed by
}

// deliveryLockSQL names the advisory lock of one invitation. A collision of
// two ids' hashes only makes one of them wait for a retry.
const deliveryLockSQL = `hashtextextended('seatd.invitation:' || $1::text, 0)`

// StartDelivery takes the delivery lock of the invitation and loads it.
// It returns ErrDeliveryBusy if another mailer holds the lock, an
// events.Error with CodeNotFound if the invitation does not exist, and an
// error wrapping ErrNotDeliverable if the invitation is dead: its seat is
// no longer pending or points at a newer invitation, it has expired, or it
// was already sent, failed or cancelled. A dead invitation that was still
// queued or sending is marked cancelled on the way. On success the caller
// must Close the Delivery.
func (db *DB) StartDelivery(ctx context.Context, invitationID string) (*Delivery, error) {
	if !events.IsUUID(invitationID) {
		return nil, events.Errorf(events.CodeNotFound, "invitation %q not found", invitationID)
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("start delivery: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+deliveryLockSQL+`)`, invitationID).Scan(&locked); err != nil {
		discardConn(conn)
		return nil, fmt.Errorf("start delivery: lock: %w", err)
	}
	if !locked {
		conn.Release()
		return nil, ErrDeliveryBusy
	}
	d := &Delivery{db: db, conn: conn, lockID: invitationID}
	if err := d.load(ctx, invitationID); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// load reads the invitation and decides whether it is still deliverable.
func (d *Delivery) load(ctx context.Context, invitationID string) error {
	var (
		m                       InvitationMail
		state, seatStatus       string
		seatInvitation, inviter *string
		to, product, org        *string
		expired                 bool
	)
	err := d.query(ctx, func(q querier) error {
		return q.QueryRow(ctx, `SELECT i.id, i.seat_id, i.nonce, i.expires_at, i.delivery_state, i.attempts,
			i.expires_at <= now(), s.status, s.invitation_id::text, s.invitation_token_hash,
			coalesce(s.email, c.email), s.inviter_email,
			prod.name, org.name
		FROM invitations i
		JOIN seats s ON s.id = i.seat_id
		LEFT JOIN customers c ON c.id = s.customer_id
		LEFT JOIN subscriptions sub ON sub.id = s.subscription_id
		LEFT JOIN orders o ON o.id = s.order_id
		LEFT JOIN products prod ON prod.id = coalesce(sub.product_id, o.product_id)
		LEFT JOIN customers pc ON pc.id = coalesce(sub.customer_id, o.customer_id)
		LEFT JOIN organizations org ON org.id = pc.organization_id
		WHERE i.id = $1`, invitationID).Scan(
			&m.InvitationID, &m.SeatID, &m.Nonce, &m.ExpiresAt, &state, &m.Attempts,
			&expired, &seatStatus, &seatInvitation, &m.TokenHash,
			&to, &inviter, &product, &org)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Errorf(events.CodeNotFound, "invitation %s not found", invitationID)
	}
	if err != nil {
		return fmt.Errorf("load invitation %s: %w", invitationID, err)
	}
	m.State = DeliveryState(state)
	m.ExpiresAt = m.ExpiresAt.UTC()
	m.To, m.InviterEmail, m.ProductName, m.Organization = orEmpty(to), orEmpty(inviter), orEmpty(product), orEmpty(org)
	d.Mail = m

	var why string
	switch {
	case m.State == DeliverySent, m.State == DeliveryFailed, m.State == DeliveryCancelled:
		return fmt.Errorf("%w: invitation %s already %s", ErrNotDeliverable, m.InvitationID, m.State)
	case seatStatus != string(events.SeatPending):
		why = "seat is " + seatStatus
	case seatInvitation == nil || *seatInvitation != m.InvitationID:
		why = "superseded by a newer invitation"
	case expired:
		why = "invitation expired"
	default:
		return nil
	}
	if err := d.cancel(ctx, why); err != nil {
		return err
	}
	return fmt.Errorf("%w: invitation %s cancelled: %s", ErrNotDeliverable, m.InvitationID, why)
}

func (d *Delivery) cancel(ctx context.Context, why string) error {
	err := d.exec(ctx, `UPDATE invitations SET delivery_state = 'cancelled', last_error = $2, updated_at = now()
		WHERE id = $1 AND delivery_state IN ('queued', 'sending')`, d.Mail.InvitationID, why)
	if err != nil {
		return fmt.Errorf("cancel invitation %s: %w", d.Mail.InvitationID, err)
	}
	d.Mail.State = DeliveryCancelled
	return nil
}

// MarkSending records that an SMTP attempt is about to start and returns
// the number of attempts including this one. It rechecks, in the same
// statement, that the invitation is still the seat's live one, so a revoke
// or resend committed since StartDelivery is honoured (ErrNotDeliverable).
func (d *Delivery) MarkSending(ctx context.Context) (int, error) {
	var attempts int
	err := d.query(ctx, func(q querier) error {
		return q.QueryRow(ctx, `UPDATE invitations i
		SET delivery_state = 'sending', attempts = i.attempts + 1, updated_at = now()
		FROM seats s
		WHERE i.id = $1 AND s.id = i.seat_id AND s.status = 'pending' AND s.invitation_id = i.id
			AND i.delivery_state IN ('queued', 'sending') AND i.expires_at > now()
		RETURNING i.attempts`, d.Mail.InvitationID).Scan(&attempts)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Something changed since load: decide again, which cancels it.
		if err := d.load(ctx, d.Mail.InvitationID); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: invitation %s changed before sending", ErrNotDeliverable, d.Mail.InvitationID)
	}
	if err != nil {
		return 0, fmt.Errorf("mark invitation %s sending: %w", d.Mail.InvitationID, err)
	}
	d.Mail.State, d.Mail.Attempts = DeliverySending, attempts
	return attempts, nil
}

// MarkSent records that the SMTP server accepted the message. It wins over
// a cancellation committed during the attempt: the email did go out.
func (d *Delivery) MarkSent(ctx context.Context) error {
	err := d.exec(ctx, `UPDATE invitations SET delivery_state = 'sent', sent_at = now(), updated_at = now()
		WHERE id = $1 AND delivery_state <> 'sent'`, d.Mail.InvitationID)
	if err != nil {
		return fmt.Errorf("mark invitation %s sent: %w", d.Mail.InvitationID, err)
	}
	d.Mail.State = DeliverySent
	return nil
}

// MarkRetry records a temporary failure: the invitation goes back to
// queued with reason as its last error. An invitation cancelled during the
// attempt stays cancelled.
func (d *Delivery) MarkRetry(ctx context.Context, reason string) error {
	err := d.exec(ctx, `UPDATE invitations SET delivery_state = 'queued', last_error = $2, updated_at = now()
		WHERE id = $1 AND delivery_state = 'sending'`, d.Mail.InvitationID, clipError(reason))
	if err != nil {
		return fmt.Errorf("mark invitation %s for retry: %w", d.Mail.InvitationID, err)
	}
	d.Mail.State = DeliveryQueued
	return nil
}

// MarkFailed records a permanent failure with its reason.
func (d *Delivery) MarkFailed(ctx context.Context, reason string) error {
	err := d.exec(ctx, `UPDATE invitations SET delivery_state = 'failed', last_error = $2, updated_at = now()
		WHERE id = $1 AND delivery_state IN ('queued', 'sending')`, d.Mail.InvitationID, clipError(reason))
	if err != nil {
		return fmt.Errorf("mark invitation %s failed: %w", d.Mail.InvitationID, err)
	}
	d.Mail.State = DeliveryFailed
	return nil
}

// Close releases the delivery lock. It is safe to call more than once.
func (d *Delivery) Close() {
	if d.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var unlocked bool
	err := d.conn.QueryRow(ctx, `SELECT pg_advisory_unlock(`+deliveryLockSQL+`)`, d.lockID).Scan(&unlocked)
	if err != nil || !unlocked {
		// A connection that may still hold the lock must not go back to
		// the pool.
		discardConn(d.conn)
	} else {
		d.conn.Release()
	}
	d.conn = nil
}

type querier interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

// query runs the delivery's statements on the lock's connection, so a
// delivery never needs a second connection from a pool its peers may have
// exhausted; once that connection is gone (the database restarted, or the
// session was terminated) it runs them on the pool, so the outcome of an
// attempt can still be recorded. Every statement here may be repeated.
func (d *Delivery) query(ctx context.Context, f func(querier) error) error {
	if c := d.conn; c != nil && !c.Conn().IsClosed() {
		err := f(c)
		if err == nil || !c.Conn().IsClosed() {
			return err
		}
	}
	return f(d.db.Pool)
}

func (d *Delivery) exec(ctx context.Context, sql string, args ...any) error {
	return d.query(ctx, func(q querier) error {
		_, err := q.Exec(ctx, sql, args...)
		return err
	})
}

func discardConn(c *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Conn().Close(ctx)
	c.Release()
}

// InvitationDeliveryStatus is what an operator sees of the delivery of a
// seat's latest invitation.
type InvitationDeliveryStatus struct {
	InvitationID string        `json:"invitation_id"`
	State        DeliveryState `json:"delivery_state"`
	Attempts     int           `json:"attempts"`
	LastError    string        `json:"last_error"`
	SentAt       *time.Time    `json:"sent_at"`
	ExpiresAt    time.Time     `json:"expires_at"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// InvitationDelivery returns the delivery state of the seat's latest
// invitation, or an events.Error with CodeNotFound if the seat never had
// one.
func (db *DB) InvitationDelivery(ctx context.Context, seatID string) (InvitationDeliveryStatus, error) {
	if !events.IsUUID(seatID) {
		return InvitationDeliveryStatus{}, events.Errorf(events.CodeNotFound, "seat %q has no invitation", seatID)
	}
	var (
		st        InvitationDeliveryStatus
		state     string
		lastError *string
	)
	err := db.Pool.QueryRow(ctx, `SELECT id, delivery_state, attempts, last_error, sent_at, expires_at, created_at, updated_at
		FROM invitations WHERE seat_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, seatID).Scan(
		&st.InvitationID, &state, &st.Attempts, &lastError, &st.SentAt, &st.ExpiresAt, &st.CreatedAt, &st.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return InvitationDeliveryStatus{}, events.Errorf(events.CodeNotFound, "seat %s has no invitation", seatID)
	}
	if err != nil {
		return InvitationDeliveryStatus{}, fmt.Errorf("invitation delivery of seat %s: %w", seatID, err)
	}
	st.State, st.LastError = DeliveryState(state), orEmpty(lastError)
	for _, t := range []*time.Time{st.SentAt, &st.ExpiresAt, &st.CreatedAt, &st.UpdatedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return st, nil
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// clipError keeps last_error readable (an SMTP server's reply can be long)
// and valid UTF-8, which a text column insists on.
func clipError(s string) string {
	const max = 1000
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
