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

// DeliveryBatch is one mailer's exclusive claim on delivering a set of
// invitations, from StartDeliveries until Close. Exclusivity comes from a
// session advisory lock per invitation, all held on one dedicated
// connection: if the mailer dies the connection closes and Postgres
// releases the locks at once, so a crashed mailer never blocks the
// redelivery, while two live mailers never talk to the SMTP server about
// the same invitation at the same time (which would happen if JetStream
// redelivered a message whose AckWait ran out mid-send, or if a mail
// request was published twice). The lock is what lets a mailer that finds
// an invitation 'sending' conclude that the mailer which set it is dead.
//
// A batch costs a fixed number of round trips whatever its size: one to
// lock and load (plus one to cancel any dead invitations), one to mark the
// attempts, one per Record, one to unlock.
type DeliveryBatch struct {
	// Mail holds the invitations of the batch that may be delivered, each
	// once, in the order they were asked for.
	Mail []InvitationMail
	// Skipped says, for every other invitation asked for, why it is not
	// in Mail: ErrDeliveryBusy if another mailer holds it; an events.Error
	// with CodeNotFound if it does not exist; an error wrapping
	// ErrNotDeliverable if it is dead (its seat is no longer pending or
	// points at a newer invitation, or it has expired: cancelled on the way
	// if it was still queued or sending) or was already sent, failed or
	// cancelled.
	Skipped map[string]error

	db     *DB
	conn   *pgxpool.Conn
	locked []string // the invitation ids whose advisory locks conn holds
}

// deliveryLock names the advisory lock of the invitation whose id is the
// SQL expression id (text). It is the key every mailer version has used, so
// replicas of different versions exclude each other. A collision of two
// ids' hashes only makes one of them wait for a retry.
func deliveryLock(id string) string {
	return `hashtextextended('seatd.invitation:' || ` + id + `, 0)`
}

// loadInvitationsSQL reads what the mailer needs of the invitations whose
// ids are in $1, and whether each is still deliverable.
const loadInvitationsSQL = `SELECT i.id::text, i.seat_id::text, i.nonce, i.expires_at, i.delivery_state, i.attempts,
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
	WHERE i.id = ANY($1::uuid[])`

// loadedInvitation is a row of loadInvitationsSQL: the mail, and why it
// must not be sent (empty if it may be).
type loadedInvitation struct {
	mail InvitationMail
	// final is set when the invitation was already sent, failed or
	// cancelled; dead says why a live-looking one must not be sent.
	final bool
	dead  string
}

func scanInvitations(rows pgx.Rows) (map[string]loadedInvitation, error) {
	out := map[string]loadedInvitation{}
	for rows.Next() {
		var (
			m                       InvitationMail
			state, seatStatus       string
			seatInvitation, inviter *string
			to, product, org        *string
			expired                 bool
		)
		if err := rows.Scan(&m.InvitationID, &m.SeatID, &m.Nonce, &m.ExpiresAt, &state, &m.Attempts,
			&expired, &seatStatus, &seatInvitation, &m.TokenHash,
			&to, &inviter, &product, &org); err != nil {
			rows.Close()
			return nil, err
		}
		m.State = DeliveryState(state)
		m.ExpiresAt = m.ExpiresAt.UTC()
		m.To, m.InviterEmail, m.ProductName, m.Organization = orEmpty(to), orEmpty(inviter), orEmpty(product), orEmpty(org)
		l := loadedInvitation{mail: m}
		switch {
		case m.State == DeliverySent, m.State == DeliveryFailed, m.State == DeliveryCancelled:
			l.final = true
		case seatStatus != string(events.SeatPending):
			l.dead = "seat is " + seatStatus
		case seatInvitation == nil || *seatInvitation != m.InvitationID:
			l.dead = "superseded by a newer invitation"
		case expired:
			l.dead = "invitation expired"
		}
		out[m.InvitationID] = l
	}
	return out, rows.Err()
}

// StartDeliveries takes the delivery locks of the invitations and loads
// those it got. Each id is taken once, however often it is listed. It
// returns an error only if the database failed it; what became of each
// invitation is in the batch's Mail and Skipped. The caller must Close the
// batch.
func (db *DB) StartDeliveries(ctx context.Context, invitationIDs []string) (*DeliveryBatch, error) {
	b := &DeliveryBatch{db: db, Skipped: map[string]error{}}
	var ids []string
	seen := map[string]bool{}
	for _, id := range invitationIDs {
		switch {
		case seen[id]:
		case !events.IsUUID(id):
			b.Skipped[id] = events.Errorf(events.CodeNotFound, "invitation %q not found", id)
		default:
			ids = append(ids, id)
		}
		seen[id] = true
	}
	if len(ids) == 0 {
		return b, nil
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("start deliveries: %w", err)
	}
	b.conn = conn
	// One round trip, two statements: the load's snapshot is taken after
	// the locks are held, so it sees every outcome their previous holder
	// committed before it let go. (A single statement would read a
	// snapshot older than its locks and could mistake an invitation a
	// live mailer has just sent for one a dead mailer left 'sending'.)
	var loaded map[string]loadedInvitation
	q := &pgx.Batch{}
	q.Queue(`SELECT k.id, pg_try_advisory_lock(`+deliveryLock("k.id")+`) FROM unnest($1::text[]) AS k(id)`, ids).
		Query(func(rows pgx.Rows) error {
			var id string
			var locked bool
			_, err := pgx.ForEachRow(rows, []any{&id, &locked}, func() error {
				if locked {
					b.locked = append(b.locked, id)
				} else {
					b.Skipped[id] = ErrDeliveryBusy
				}
				return nil
			})
			return err
		})
	q.Queue(loadInvitationsSQL, ids).Query(func(rows pgx.Rows) (err error) {
		loaded, err = scanInvitations(rows)
		return err
	})
	if err := conn.SendBatch(ctx, q).Close(); err != nil {
		// Session locks outlive a failed statement: the connection goes.
		b.closeConn(false)
		return nil, fmt.Errorf("start deliveries: %w", err)
	}
	var deadIDs, deadWhy []string
	for _, id := range ids {
		if b.Skipped[id] != nil {
			continue // busy: what was loaded is not ours to judge
		}
		l, ok := loaded[id]
		switch {
		case !ok:
			b.Skipped[id] = events.Errorf(events.CodeNotFound, "invitation %s not found", id)
		case l.final:
			b.Skipped[id] = fmt.Errorf("%w: invitation %s already %s", ErrNotDeliverable, id, l.mail.State)
		case l.dead != "":
			deadIDs, deadWhy = append(deadIDs, id), append(deadWhy, l.dead)
		default:
			b.Mail = append(b.Mail, l.mail)
		}
	}
	if err := b.cancel(ctx, deadIDs, deadWhy); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// cancel marks dead invitations cancelled, each with why it died, and
// notes them in Skipped.
func (b *DeliveryBatch) cancel(ctx context.Context, ids, why []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := b.exec(ctx, `UPDATE invitations i SET delivery_state = 'cancelled', last_error = k.why, updated_at = now()
		FROM unnest($1::uuid[], $2::text[]) AS k(id, why)
		WHERE i.id = k.id AND i.delivery_state IN ('queued', 'sending')`, ids, why)
	if err != nil {
		return fmt.Errorf("cancel invitations: %w", err)
	}
	for i, id := range ids {
		b.Skipped[id] = fmt.Errorf("%w: invitation %s cancelled: %s", ErrNotDeliverable, id, why[i])
	}
	return nil
}

// MarkSending records that SMTP attempts of the invitations are about to
// start, and returns each one's number of attempts including this one. It
// rechecks, in the same statement, that each invitation is still its
// seat's live one: one revoked, claimed or superseded since StartDeliveries
// is cancelled and returned in dead, with an error wrapping
// ErrNotDeliverable, and must not be sent. An id in neither map could not
// be marked for no reason the ledger shows; it must not be sent now. ids
// must be in b.Mail.
//
// It runs only on the connection holding the locks: once that is gone,
// another mailer may hold them, and no attempt may start.
func (b *DeliveryBatch) MarkSending(ctx context.Context, ids []string) (attempts map[string]int, dead map[string]error, err error) {
	if b.conn == nil || b.conn.Conn().IsClosed() {
		return nil, nil, errors.New("mark invitations sending: the delivery locks' connection is gone")
	}
	attempts = map[string]int{}
	rows, err := b.conn.Query(ctx, `UPDATE invitations i
		SET delivery_state = 'sending', attempts = i.attempts + 1, updated_at = now()
		FROM seats s
		WHERE i.id = ANY($1::uuid[]) AND s.id = i.seat_id AND s.status = 'pending' AND s.invitation_id = i.id
			AND i.delivery_state IN ('queued', 'sending') AND i.expires_at > now()
		RETURNING i.id::text, i.attempts`, ids)
	if err == nil {
		var id string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			attempts[id] = n
			return nil
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mark invitations sending: %w", err)
	}
	var changed []string
	for _, id := range ids {
		if _, ok := attempts[id]; !ok {
			changed = append(changed, id)
		}
	}
	for i := range b.Mail {
		if n, ok := attempts[b.Mail[i].InvitationID]; ok {
			b.Mail[i].State, b.Mail[i].Attempts = DeliverySending, n
		}
	}
	if len(changed) == 0 {
		return attempts, nil, nil
	}
	// Something changed since the load: decide again, which cancels them.
	dead = map[string]error{}
	var loaded map[string]loadedInvitation
	err = b.query(ctx, func(q querier) error {
		rows, err := q.Query(ctx, loadInvitationsSQL, changed)
		if err != nil {
			return err
		}
		loaded, err = scanInvitations(rows)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reload invitations: %w", err)
	}
	var deadIDs, deadWhy []string
	for _, id := range changed {
		switch l := loaded[id]; {
		case l.dead != "":
			deadIDs, deadWhy = append(deadIDs, id), append(deadWhy, l.dead)
		case l.final:
			dead[id] = fmt.Errorf("%w: invitation %s already %s", ErrNotDeliverable, id, l.mail.State)
		}
	}
	if err := b.cancel(ctx, deadIDs, deadWhy); err != nil {
		return nil, nil, err
	}
	for _, id := range deadIDs {
		dead[id] = b.Skipped[id]
	}
	return attempts, dead, nil
}

// DeliveryOutcomes are what became of SMTP attempts (or of invitations that
// could not be attempted), keyed by invitation id.
type DeliveryOutcomes struct {
	// Sent: the SMTP server accepted the message. This wins over a
	// cancellation committed during the attempt: the email did go out.
	Sent []string
	// Retry: a temporary failure, with its reason; the invitation goes
	// back to queued. One cancelled during the attempt stays cancelled.
	Retry map[string]string
	// Failed: a permanent failure, with its reason.
	Failed map[string]string
}

// Record writes outcomes, one statement per state, in one round trip and
// one transaction: all of them or none. Once the locks' connection is gone
// (the database restarted, or the session was terminated) it writes them
// through the pool, so an attempt's outcome can still be recorded. Every
// statement may be repeated.
func (b *DeliveryBatch) Record(ctx context.Context, o DeliveryOutcomes) error {
	q := &pgx.Batch{}
	if len(o.Sent) > 0 {
		q.Queue(`UPDATE invitations SET delivery_state = 'sent', sent_at = now(), updated_at = now()
			WHERE id = ANY($1::uuid[]) AND delivery_state <> 'sent'`, o.Sent)
	}
	queueReasons := func(states string, to DeliveryState, reasons map[string]string) {
		if len(reasons) == 0 {
			return
		}
		ids, why := make([]string, 0, len(reasons)), make([]string, 0, len(reasons))
		for id, reason := range reasons {
			ids, why = append(ids, id), append(why, clipError(reason))
		}
		q.Queue(`UPDATE invitations i SET delivery_state = $3, last_error = k.why, updated_at = now()
			FROM unnest($1::uuid[], $2::text[]) AS k(id, why)
			WHERE i.id = k.id AND i.delivery_state IN (`+states+`)`, ids, why, string(to))
	}
	queueReasons(`'sending'`, DeliveryQueued, o.Retry)
	queueReasons(`'queued', 'sending'`, DeliveryFailed, o.Failed)
	if q.Len() == 0 {
		return nil
	}
	err := b.query(ctx, func(qr querier) error { return qr.SendBatch(ctx, q).Close() })
	if err != nil {
		return fmt.Errorf("record delivery outcomes: %w", err)
	}
	return nil
}

// Close releases the delivery locks. It is safe to call more than once.
func (b *DeliveryBatch) Close() {
	if b.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stillHeld int
	err := b.conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT pg_advisory_unlock(`+deliveryLock("k.id")+`))
		FROM unnest($1::text[]) AS k(id)`, b.locked).Scan(&stillHeld)
	// A connection that may still hold a lock must not go back to the
	// pool.
	b.closeConn(err == nil && stillHeld == 0)
}

func (b *DeliveryBatch) closeConn(clean bool) {
	if clean {
		b.conn.Release()
	} else {
		discardConn(b.conn)
	}
	b.conn, b.locked = nil, nil
}

type querier interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}

// query runs statements on the locks' connection, so a batch never needs a
// second connection from a pool its peers may have exhausted; once that
// connection is gone it runs them on the pool. Only statements that may be
// repeated, and that need no lock, go through here.
func (b *DeliveryBatch) query(ctx context.Context, f func(querier) error) error {
	if c := b.conn; c != nil && !c.Conn().IsClosed() {
		err := f(c)
		if err == nil || !c.Conn().IsClosed() {
			return err
		}
	}
	return f(b.db.Pool)
}

func (b *DeliveryBatch) exec(ctx context.Context, sql string, args ...any) error {
	return b.query(ctx, func(q querier) error {
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
