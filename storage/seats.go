package storage

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// seatColumns selects everything a CustomerSeat needs; scanSeat reads it.
// customer_email is Polar's: the seat's email, else its member's, else its
// customer's.
const seatColumns = `s.id, s.subscription_id, s.order_id, s.status, s.customer_id, s.member_id,
	s.email, coalesce(s.email, m.email, c.email), s.invitation_token_expires_at, s.claimed_at, s.revoked_at, s.seat_metadata,
	s.created_at, s.modified_at, s.version, ` + memberColumns

const seatFrom = ` FROM seats s LEFT JOIN customers c ON c.id = s.customer_id LEFT JOIN members m ON m.id = s.member_id `

// memberColumns selects a member (aliased m) for memberScan.
const memberColumns = `m.id, m.created_at, m.modified_at, m.customer_id, m.email, m.name, m.external_id, m.role`

// memberScan reads memberColumns, which a LEFT JOIN may leave all null.
type memberScan struct {
	id, customerID, email, role, name, externalID *string
	created, modified                             *time.Time
}

func (m *memberScan) dest() []any {
	return []any{&m.id, &m.created, &m.modified, &m.customerID, &m.email, &m.name, &m.externalID, &m.role}
}

// member is the member read, or nil when there was none.
func (m *memberScan) member() *events.Member {
	if m.id == nil {
		return nil
	}
	out := events.Member{ID: *m.id, CreatedAt: m.created.UTC(), ModifiedAt: m.modified, CustomerID: *m.customerID,
		Email: *m.email, Name: m.name, ExternalID: m.externalID, Role: *m.role}
	if out.ModifiedAt != nil {
		utc(out.ModifiedAt)
	}
	return &out
}

type seatRow struct {
	seat    events.CustomerSeat
	version int
}

func scanSeat(row pgx.Row) (seatRow, error) {
	var (
		r    seatRow
		meta []byte
	)
	s := &r.seat
	var m memberScan
	err := row.Scan(append([]any{&s.ID, &s.SubscriptionID, &s.OrderID, &s.Status, &s.CustomerID, &s.MemberID,
		&s.Email, &s.CustomerEmail, &s.InvitationTokenExpiresAt, &s.ClaimedAt, &s.RevokedAt, &meta,
		&s.CreatedAt, &s.ModifiedAt, &r.version}, m.dest()...)...)
	if err != nil {
		return seatRow{}, err
	}
	s.Member = m.member()
	if meta != nil {
		s.SeatMetadata = json.RawMessage(meta)
	}
	utc(&s.CreatedAt)
	for _, t := range []*time.Time{s.ModifiedAt, s.InvitationTokenExpiresAt, s.ClaimedAt, s.RevokedAt} {
		if t != nil {
			utc(t)
		}
	}
	return r, nil
}

func utc(t *time.Time) { *t = t.UTC() }

func loadSeat(ctx context.Context, q pgx.Tx, id string) (seatRow, error) {
	return scanSeat(q.QueryRow(ctx, "SELECT "+seatColumns+seatFrom+"WHERE s.id = $1", id))
}

// Settings are the knobs of the seat transaction.
type Settings struct {
	Keys          secret.Keys
	InvitationTTL time.Duration // default 24h
	SessionTTL    time.Duration // sessions created by a claim; default 1h
}

func (s Settings) invitationTTL() time.Duration {
	if s.InvitationTTL > 0 {
		return s.InvitationTTL
	}
	return 24 * time.Hour
}

func (s Settings) sessionTTL() time.Duration {
	if s.SessionTTL > 0 {
		return s.SessionTTL
	}
	return time.Hour
}

// pool is a subscription or an order: the unit whose row lock serialises
// capacity checks.
type pool struct {
	table         string // "subscriptions" or "orders"
	id            string
	customerID    string
	customerEmail string
	orgID         string
	status        string
	seats         int
	used          int
	seatPricing   bool
	memberModel   bool
}

func (p pool) column() string {
	if p.table == "orders" {
		return "order_id"
	}
	return "subscription_id"
}

func (p pool) kind() string {
	if p.table == "orders" {
		return "Order"
	}
	return "Subscription"
}

// lockPool reads a pool owned by owner and takes its row lock: from here to
// commit, no other transaction can change this pool's seats_used, so the
// capacity check and the seat insert that follows are atomic across any
// number of workers.
func lockPool(ctx context.Context, tx pgx.Tx, table, id string, owner Owner) (pool, error) {
	p := pool{table: table, id: id}
	owned, ownerID := owner.where("p.customer_id", "c.organization_id", 2)
	err := tx.QueryRow(ctx, `SELECT p.customer_id, c.email, c.organization_id, p.status,
			p.seats, p.seats_used, o.seat_based_pricing, o.member_model
		FROM `+table+` p JOIN customers c ON c.id = p.customer_id JOIN organizations o ON o.id = c.organization_id
		WHERE p.id = $1 AND `+owned+`
		FOR UPDATE OF p`, id, ownerID).
		Scan(&p.customerID, &p.customerEmail, &p.orgID, &p.status, &p.seats, &p.used, &p.seatPricing, &p.memberModel)
	if errors.Is(err, pgx.ErrNoRows) {
		return pool{}, events.Errorf(events.CodeNotFound, "%s not found", p.kind())
	}
	return p, err
}

// Polar's refusals of a container, shared by both paths (and the list).
var (
	errCheckoutNotFound    = events.Errorf(events.CodeNotFound, "No subscription or order found for this checkout")
	errSeatPricingDisabled = events.Errorf(events.CodeSeatPricingDisabled, "Seat-based pricing is not enabled for this organization")
	errOrderNotPaid        = events.Errorf(events.CodeOrderNotPaid, "Order must be paid before assigning seats")
)

func noAvailableSeats(poolID string) *events.Error {
	return events.Errorf(events.CodeNoAvailableSeats, "No available seats for %s", poolID)
}

// resolvePool finds the pool an assign names, scoped to the caller. Only a
// customer names a checkout (events.Request.Check).
func resolvePool(ctx context.Context, tx pgx.Tx, a *events.SeatAssign, caller Owner) (pool, error) {
	switch {
	case a.SubscriptionID != "":
		return lockPool(ctx, tx, "subscriptions", a.SubscriptionID, caller)
	case a.OrderID != "":
		return lockPool(ctx, tx, "orders", a.OrderID, caller)
	}
	var subID, orderID *string
	err := tx.QueryRow(ctx, `SELECT subscription_id, order_id FROM checkouts WHERE id = $1 AND customer_id = $2`,
		a.CheckoutID, caller.CustomerID).Scan(&subID, &orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return pool{}, errCheckoutNotFound
	}
	if err != nil {
		return pool{}, err
	}
	if subID != nil {
		return lockPool(ctx, tx, "subscriptions", *subID, caller)
	}
	return lockPool(ctx, tx, "orders", *orderID, caller)
}

// recipient is who a seat goes to.
type recipient struct {
	customerID    string         // the seat's customer: the occupant's, or the purchaser with a member
	customerEmail string         // the seat's customer_email: the occupant's address
	member        *events.Member // the occupant, when a member
	holder        string         // the occupant's key in seats_one_per_holder
}

// email is the seat's email: the member's, with a member.
func (r recipient) email() *string {
	if r.member == nil {
		return nil
	}
	return &r.member.Email
}

func (r recipient) memberID() *string {
	if r.member == nil {
		return nil
	}
	return &r.member.ID
}

// memberPath reports whether an assign's occupant is a member of the
// purchaser: with the member model, or when the assign names a member
// (Polar takes that path for member_id and external_member_id whatever the
// organization's model).
func memberPath(p *pool, a *events.SeatAssign) bool { return p.memberModel || a.NamesMember() }

// alreadyAssigned is Polar's SeatAlreadyAssigned: it names the member's
// email, or the customer identifier the assign gave.
func alreadyAssigned(a *events.SeatAssign, rc recipient) *events.Error {
	who := a.Email + a.ExternalCustomerID + a.CustomerID // exactly one is set without a member
	if rc.member != nil {
		who = rc.member.Email
	}
	return events.Errorf(events.CodeAlreadyAssigned, "Seat already assigned to customer %s", who)
}

// Polar's refusals of a recipient, shared by both paths.
func customerNotFound(a *events.SeatAssign) *events.Error {
	return events.Errorf(events.CodeCustomerNotFound, "Customer not found: %s", a.ExternalCustomerID+a.CustomerID)
}

var errMemberCustomerNotFound = events.Errorf(events.CodeInvalidSeatAssignment,
	"Customer not found for the provided customer_id or external_customer_id.")

func memberNotFound(id string) *events.Error {
	return events.Errorf(events.CodeMemberNotFound, "Member not found: %s", id)
}

func memberEmailMismatch(externalID, email string) *events.Error {
	return events.Errorf(events.CodeMemberEmailMismatch,
		"Member with external_member_id '%s' exists but has a different email than '%s'", externalID, email)
}

func resolveRecipient(ctx context.Context, tx pgx.Tx, p *pool, a *events.SeatAssign, now time.Time) (recipient, error) {
	var (
		custID, custEmail string
		err               error
	)
	switch {
	case a.CustomerID != "":
		err = tx.QueryRow(ctx, `SELECT id, email FROM customers WHERE id = $1 AND organization_id = $2`,
			a.CustomerID, p.orgID).Scan(&custID, &custEmail)
	case a.ExternalCustomerID != "":
		err = tx.QueryRow(ctx, `SELECT id, email FROM customers WHERE external_id = $1 AND organization_id = $2`,
			a.ExternalCustomerID, p.orgID).Scan(&custID, &custEmail)
	default:
		custEmail = a.Email
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows) && memberPath(p, a):
		return recipient{}, errMemberCustomerNotFound
	case errors.Is(err, pgx.ErrNoRows):
		return recipient{}, customerNotFound(a)
	case err != nil:
		return recipient{}, err
	}
	if memberPath(p, a) {
		// The seat belongs to the purchaser; the occupant is a member of
		// the purchaser's customer.
		m, err := resolveMember(ctx, tx, p.customerID, custEmail, a, now)
		if err != nil {
			return recipient{}, err
		}
		return recipient{customerID: p.customerID, customerEmail: m.Email, member: &m,
			holder: "email:" + events.EmailKey(m.Email)}, nil
	}
	if custID == "" {
		if custID, custEmail, err = findOrCreateCustomer(ctx, tx, p.orgID, custEmail); err != nil {
			return recipient{}, err
		}
	}
	return recipient{customerID: custID, customerEmail: custEmail, holder: "customer:" + custID}, nil
}

// resolveMember finds the purchaser's member an assign names, or creates
// it, deciding with memberSet.resolve (the set-based path's decision) on
// the rows it could look at. A member created concurrently by another
// transaction makes the insert skip; the member is then read and the
// decision taken again.
func resolveMember(ctx context.Context, tx pgx.Tx, purchaser, email string, a *events.SeatAssign, now time.Time) (events.Member, error) {
	for attempt := 0; ; attempt++ {
		set := newMemberSet()
		rows, err := tx.Query(ctx, `SELECT `+memberColumns+` FROM members m WHERE m.customer_id = $1
			AND (m.id = $2::uuid OR m.external_id = $3 OR m.email_key = $4)`,
			purchaser, nullIfEmpty(a.MemberID), nullIfEmpty(a.ExternalMemberID), events.EmailKey(email))
		if err != nil {
			return events.Member{}, err
		}
		err = set.scan(rows)
		rows.Close()
		if err := errors.Join(err, rows.Err()); err != nil {
			return events.Member{}, err
		}
		m, change, refusal := set.resolve(purchaser, email, a, now)
		if refusal != nil {
			return events.Member{}, refusal
		}
		switch change {
		case memberCreated:
			tag, err := tx.Exec(ctx, `INSERT INTO members (id, customer_id, email, email_key, role, external_id, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (customer_id, email_key) DO NOTHING`,
				m.ID, m.CustomerID, m.Email, events.EmailKey(m.Email), m.Role, m.ExternalID, m.CreatedAt)
			if err != nil {
				return events.Member{}, err
			}
			if tag.RowsAffected() == 0 && attempt == 0 {
				continue
			}
			if tag.RowsAffected() == 0 {
				return events.Member{}, fmt.Errorf("member %s of customer %s: created and gone", email, purchaser)
			}
		case memberLinked:
			if _, err := tx.Exec(ctx, `UPDATE members SET external_id = $2, modified_at = $3 WHERE id = $1`,
				m.ID, m.ExternalID, m.ModifiedAt); err != nil {
				return events.Member{}, err
			}
		}
		return m, nil
	}
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// findOrCreateCustomer is safe under concurrency: the unique index on
// (organization_id, email_key) lets exactly one insert win, and the losers
// read the winner's row. The key makes one mailbox one customer however
// its address is spelled (case, IDNA or Unicode domain).
func findOrCreateCustomer(ctx context.Context, tx pgx.Tx, orgID, email string) (id, stored string, err error) {
	key := events.EmailKey(email)
	err = tx.QueryRow(ctx, `INSERT INTO customers (id, organization_id, email, email_key) VALUES ($1, $2, $3, $4)
		ON CONFLICT (organization_id, email_key) DO NOTHING RETURNING id, email`, uuid.NewString(), orgID, email, key).Scan(&id, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, `SELECT id, email FROM customers WHERE organization_id = $1 AND email_key = $2`,
			orgID, key).Scan(&id, &stored)
	}
	return id, stored, err
}

// assign applies one SeatAssign, checking in Polar's order: container,
// seat-based pricing, payment, (lock) capacity, recipient, duplicate.
func (db *DB) assign(ctx context.Context, tx pgx.Tx, st Settings, r events.Request, now time.Time) (events.Result, error) {
	a := r.Assign
	p, err := resolvePool(ctx, tx, a, OwnerOf(r))
	if err != nil {
		return events.Result{}, err
	}
	if !p.seatPricing {
		return events.Result{}, errSeatPricingDisabled
	}
	if p.table == "orders" && p.status != "paid" {
		return events.Result{}, errOrderNotPaid
	}
	if p.seats-p.used <= 0 {
		return events.Result{}, noAvailableSeats(p.id)
	}
	rcpt, err := resolveRecipient(ctx, tx, &p, a, now)
	if err != nil {
		return events.Result{}, err
	}
	var taken bool
	// Written to match seats_one_per_holder, so it is an index probe
	// however many seats the pool holds.
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM seats WHERE coalesce(subscription_id, order_id) = $1
		AND holder = $2 AND status IN ('pending', 'claimed'))`, p.id, rcpt.holder).Scan(&taken); err != nil {
		return events.Result{}, err
	}
	if taken {
		return events.Result{}, alreadyAssigned(a, rcpt)
	}

	// The seat is built here rather than read back: one round trip fewer
	// per request, and the trailing writes go out as one batch.
	seat := events.CustomerSeat{ID: uuid.NewString(), CreatedAt: now, Status: events.SeatPending,
		CustomerID: &rcpt.customerID, MemberID: rcpt.memberID(), Member: rcpt.member, Email: rcpt.email(),
		CustomerEmail: &rcpt.customerEmail, SeatMetadata: a.Metadata}
	if p.table == "orders" {
		seat.OrderID = &p.id
	} else {
		seat.SubscriptionID = &p.id
	}
	var meta any
	if len(a.Metadata) > 0 {
		meta = string(a.Metadata)
	}
	inviter := p.customerEmail
	if r.MemberID != "" {
		_ = tx.QueryRow(ctx, `SELECT email FROM members WHERE id = $1`, r.MemberID).Scan(&inviter)
	}
	var (
		invID     *string
		tokenHash []byte
		nonce     []byte
		evType    = events.SeatAssigned
	)
	if a.ImmediateClaim {
		seat.Status, seat.ClaimedAt, evType = events.SeatClaimed, &now, events.SeatClaimedEvent
	} else {
		id, expires := uuid.NewString(), now.Add(st.invitationTTL())
		invID, nonce, seat.InvitationTokenExpiresAt = &id, secret.NewNonce(), &expires
		tokenHash = secret.HashToken(st.Keys.InvitationToken(nonce))
	}
	// version 2: the assigned (or claimed) event below is the seat's first.
	_, err = tx.Exec(ctx, `INSERT INTO seats (id, `+p.column()+`, status, customer_id, member_id, email, holder,
			invitation_id, invitation_token_hash, invitation_token_expires_at, claimed_at, seat_metadata, inviter_email,
			created_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, 2)`,
		seat.ID, p.id, seat.Status, rcpt.customerID, seat.MemberID, seat.Email, rcpt.holder,
		invID, tokenHash, seat.InvitationTokenExpiresAt, seat.ClaimedAt, meta, inviter, now)
	if isUniqueViolation(err, "seats_one_per_holder") {
		return events.Result{}, alreadyAssigned(a, rcpt)
	}
	if err != nil {
		return events.Result{}, fmt.Errorf("insert seat: %w", err)
	}
	b := &pgx.Batch{}
	if invID != nil {
		if err := queueInvitation(b, r, *invID, seat.ID, nonce, tokenHash, *seat.InvitationTokenExpiresAt, now); err != nil {
			return events.Result{}, err
		}
	}
	// The CHECK on seats_used is the last line of defence against oversell.
	b.Queue(`UPDATE `+p.table+` SET seats_used = seats_used + 1 WHERE id = $1`, p.id)
	if err := queueSeatEvent(b, seatEvent(evType, seat, 1, now)); err != nil {
		return events.Result{}, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return events.Result{}, fmt.Errorf("assign %s: %w", seat.ID, err)
	}
	return events.Result{Code: events.CodeOK, Seat: &seat}, nil
}

func seatEvent(t events.SeatEventType, seat events.CustomerSeat, version int, now time.Time) events.SeatEvent {
	return events.SeatEvent{ID: uuid.NewString(), Type: t, Timestamp: now, Version: version, Data: seat}
}

// queueInvitation adds an invitation and its mail request to b. The
// invitation keeps its token's hash so the claim page can still recognise
// the link after the seat has moved on (claimed, revoked, resent).
func queueInvitation(b *pgx.Batch, r events.Request, invID, seatID string, nonce, tokenHash []byte, expires, now time.Time) error {
	b.Queue(`INSERT INTO invitations (id, seat_id, nonce, token_hash, expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)`, invID, seatID, nonce, tokenHash, expires, now)
	return queueOutbox(b, events.MailSubject, "mail-"+invID, events.MailRequest{InvitationID: invID, SeatID: seatID,
		RequestID: r.ID, Trace: r.Trace})
}

// queueSeatEvent adds a seat event to b's outbox writes.
func queueSeatEvent(b *pgx.Batch, ev events.SeatEvent) error {
	return queueOutbox(b, events.SeatEventSubject(ev.Type), "event-"+ev.ID, ev)
}

// queueOutbox adds a message to the outbox; the relay publishes it after
// commit, so only committed changes are ever announced.
func queueOutbox(b *pgx.Batch, subject, msgID string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.Queue(`INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3)`, subject, msgID, payload)
	return nil
}

// lockOwnedSeat reads a seat in one of owner's pools and takes its row lock.
// A seat in someone else's pool is reported exactly like a missing one.
// pricing is whether the pool's organization has seat-based pricing, which
// the caller checks after this lookup, as Polar does.
func lockOwnedSeat(ctx context.Context, tx pgx.Tx, seatID string, owner Owner) (seat seatRow, pricing bool, err error) {
	owned, ownerID := owner.where("buyer.id", "buyer.organization_id", 2)
	err = tx.QueryRow(ctx, `SELECT org.seat_based_pricing FROM seats s
		LEFT JOIN subscriptions sub ON sub.id = s.subscription_id
		LEFT JOIN orders o ON o.id = s.order_id
		JOIN customers buyer ON buyer.id = coalesce(sub.customer_id, o.customer_id)
		JOIN organizations org ON org.id = buyer.organization_id
		WHERE s.id = $1 AND `+owned+`
		FOR UPDATE OF s`, seatID, ownerID).Scan(&pricing)
	if errors.Is(err, pgx.ErrNoRows) {
		return seatRow{}, false, events.Errorf(events.CodeNotFound, "Seat not found")
	}
	if err != nil {
		return seatRow{}, false, err
	}
	seat, err = loadSeat(ctx, tx, seatID)
	return seat, pricing, err
}

// resend checks as Polar: the seat (404), seat-based pricing (403), then
// that the seat is pending (400).
func (db *DB) resend(ctx context.Context, tx pgx.Tx, st Settings, r events.Request, now time.Time) (events.Result, error) {
	seat, pricing, err := lockOwnedSeat(ctx, tx, r.SeatID, OwnerOf(r))
	if err != nil {
		return events.Result{}, err
	}
	if !pricing {
		return events.Result{}, errSeatPricingDisabled
	}
	if seat.seat.Status != events.SeatPending {
		return events.Result{}, events.Errorf(events.CodeNotPending, "Seat is not in pending status")
	}
	// A fresh token and expiry: the old link dies with the old invitation.
	invID, nonce, expires := uuid.NewString(), secret.NewNonce(), now.Add(st.invitationTTL())
	tokenHash := secret.HashToken(st.Keys.InvitationToken(nonce))
	b := &pgx.Batch{}
	b.Queue(`UPDATE invitations SET delivery_state = 'cancelled', updated_at = $2
		WHERE seat_id = $1 AND delivery_state IN ('queued', 'sending')`, r.SeatID, now)
	b.Queue(`UPDATE seats SET invitation_id = $2, invitation_token_hash = $3,
		invitation_token_expires_at = $4, modified_at = $5 WHERE id = $1`,
		r.SeatID, invID, tokenHash, expires, now)
	if err := queueInvitation(b, r, invID, r.SeatID, nonce, tokenHash, expires, now); err != nil {
		return events.Result{}, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return events.Result{}, fmt.Errorf("resend %s: %w", r.SeatID, err)
	}
	seat, err = loadSeat(ctx, tx, r.SeatID)
	if err != nil {
		return events.Result{}, err
	}
	return events.Result{Code: events.CodeOK, Seat: &seat.seat}, nil
}

// revoke checks as Polar: the seat (404), then seat-based pricing (403),
// except that the portal answers an already revoked seat unchanged before
// the pricing check (Polar's revoke_seat returns early), while the
// organization API checks pricing first (its endpoint checks before
// calling revoke_seat).
func (db *DB) revoke(ctx context.Context, tx pgx.Tx, r events.Request, now time.Time) (events.Result, error) {
	seat, pricing, err := lockOwnedSeat(ctx, tx, r.SeatID, OwnerOf(r))
	if err != nil {
		return events.Result{}, err
	}
	if !pricing && r.OrganizationID != "" {
		return events.Result{}, errSeatPricingDisabled
	}
	if seat.seat.Status == events.SeatRevoked {
		return events.Result{Code: events.CodeOK, Seat: &seat.seat}, nil // idempotent: nothing changes, nothing is emitted
	}
	if !pricing {
		return events.Result{}, errSeatPricingDisabled
	}
	seat, err = revokeLocked(ctx, tx, seat, now)
	if err != nil {
		return events.Result{}, err
	}
	return events.Result{Code: events.CodeOK, Seat: &seat.seat}, nil
}

// revokeLocked revokes a live seat whose row lock the caller holds, frees
// its slot in the pool and emits customer_seat.revoked.
func revokeLocked(ctx context.Context, tx pgx.Tx, seat seatRow, now time.Time) (seatRow, error) {
	id := seat.seat.ID
	if _, err := tx.Exec(ctx, `UPDATE seats SET status = 'revoked', revoked_at = $2, modified_at = $2,
			invitation_id = NULL, invitation_token_hash = NULL, invitation_token_expires_at = NULL,
			customer_id = NULL, member_id = NULL, email = NULL, holder = NULL
		WHERE id = $1`, id, now); err != nil {
		return seatRow{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE invitations SET delivery_state = 'cancelled', updated_at = $2
		WHERE seat_id = $1 AND delivery_state IN ('queued', 'sending')`, id, now); err != nil {
		return seatRow{}, err
	}
	// The session the claim created ends with the seat: its token no longer
	// authenticates, and an idempotent replay of the claim cannot revive it.
	if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE seat_id = $1`, id); err != nil {
		return seatRow{}, err
	}
	table, poolID := "subscriptions", seat.seat.SubscriptionID
	if poolID == nil {
		table, poolID = "orders", seat.seat.OrderID
	}
	if _, err := tx.Exec(ctx, `UPDATE `+table+` SET seats_used = seats_used - 1 WHERE id = $1`, *poolID); err != nil {
		return seatRow{}, err
	}
	seat, err := loadSeat(ctx, tx, id)
	if err != nil {
		return seatRow{}, err
	}
	return seat, emitSeatEvent(ctx, tx, events.SeatRevokedEvent, seat, now)
}

var errInvalidToken = events.Errorf(events.CodeInvalidToken, "Invalid or expired invitation token")

// claim redeems an invitation. The seat's row lock makes two racing claims
// of one token serialise: the first clears the token hash, so the second
// finds nothing. As Polar, a live token of an organization without
// seat-based pricing is refused (403) after the token checks (400), and the
// token stays usable.
func (db *DB) claim(ctx context.Context, tx pgx.Tx, st Settings, r events.Request, now time.Time) (events.Result, error) {
	hash, err := hex.DecodeString(r.TokenHash)
	if err != nil {
		return events.Result{}, errInvalidToken
	}
	var seatID string
	var expires time.Time
	var pricing bool
	err = tx.QueryRow(ctx, `SELECT s.id, s.invitation_token_expires_at, org.seat_based_pricing FROM seats s
		LEFT JOIN subscriptions sub ON sub.id = s.subscription_id
		LEFT JOIN orders o ON o.id = s.order_id
		JOIN customers buyer ON buyer.id = coalesce(sub.customer_id, o.customer_id)
		JOIN organizations org ON org.id = buyer.organization_id
		WHERE s.invitation_token_hash = $1 AND s.status = 'pending' FOR UPDATE OF s`, hash).Scan(&seatID, &expires, &pricing)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !now.Before(expires)) {
		return events.Result{}, errInvalidToken
	}
	if err != nil {
		return events.Result{}, err
	}
	if !pricing {
		return events.Result{}, errSeatPricingDisabled
	}
	if _, err := tx.Exec(ctx, `UPDATE seats SET status = 'claimed', claimed_at = $2, modified_at = $2,
			invitation_token_hash = NULL, invitation_id = NULL
		WHERE id = $1`, seatID, now); err != nil {
		return events.Result{}, err
	}
	seat, err := loadSeat(ctx, tx, seatID)
	if err != nil {
		return events.Result{}, err
	}
	// The claimant gets a session: a member session when the seat has a
	// member, a customer session otherwise. Its token derives from the
	// request id, so an idempotent replay of this claim returns the same
	// token.
	sessionID := uuid.NewSHA1(uuid.NameSpaceOID, []byte("claim-session:"+r.ID)).String()
	// The session belongs to the seat: revoking the seat ends it.
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, token_hash, customer_id, member_id, scopes, expires_at, seat_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, sessionID, secret.HashToken(st.Keys.SessionToken(r.ID)),
		*seat.seat.CustomerID, seat.seat.MemberID, DefaultScopes, now.Add(st.sessionTTL()), seatID); err != nil {
		return events.Result{}, fmt.Errorf("claim session: %w", err)
	}
	if err := emitSeatEvent(ctx, tx, events.SeatClaimedEvent, seat, now); err != nil {
		return events.Result{}, err
	}
	return events.Result{Code: events.CodeOK, Seat: &seat.seat, SessionID: sessionID}, nil
}

// emitSeatEvent bumps the seat's version and writes the event to the
// outbox, in the transaction that made the change.
func emitSeatEvent(ctx context.Context, tx pgx.Tx, t events.SeatEventType, seat seatRow, now time.Time) error {
	var version int
	if err := tx.QueryRow(ctx, `UPDATE seats SET version = version + 1 WHERE id = $1 RETURNING version - 1`,
		seat.seat.ID).Scan(&version); err != nil {
		return err
	}
	b := &pgx.Batch{}
	if err := queueSeatEvent(b, seatEvent(t, seat.seat, version, now.UTC())); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}
