package storage_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

// invFixture is a database with one pending seat and its invitation.
type invFixture struct {
	db     *storage.DB
	seatID string
	invID  string
	nonce  []byte
	hash   []byte
}

func invSetup(t *testing.T) *invFixture {
	t.Helper()
	ctx := t.Context()
	db, err := storage.Open(ctx, storagetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	f := &invFixture{db: db, seatID: uuid.NewString(), invID: uuid.NewString(), nonce: secret.NewNonce()}
	f.hash = secret.HashToken("token-of-" + f.invID)
	org, buyer, member, sub := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	f.exec(t, `INSERT INTO organizations (id, name, slug) VALUES ($1, 'Initech', 'initech')`, org)
	f.exec(t, `INSERT INTO customers (id, organization_id, email) VALUES ($1, $2, 'buyer@initech.test')`, buyer, org)
	f.exec(t, `INSERT INTO customers (id, organization_id, email) VALUES ($1, $2, 'peter@initech.test')`, member, org)
	prod := uuid.NewString()
	f.exec(t, `INSERT INTO products (id, organization_id, name, recurring_interval, recurring_interval_count)
		VALUES ($1, $2, 'TPS Reports', 'month', 1)`, prod, org)
	f.exec(t, `INSERT INTO subscriptions (id, customer_id, product_id, seats, seats_used, status)
		VALUES ($1, $2, $3, 5, 1, 'active')`, sub, buyer, prod)
	f.exec(t, `INSERT INTO seats (id, subscription_id, status, customer_id, holder, invitation_id,
			invitation_token_hash, invitation_token_expires_at, inviter_email)
		VALUES ($1, $2, 'pending', $3, $4, $5, $6, now() + interval '1 day', 'bill@initech.test')`,
		f.seatID, sub, member, member, f.invID, f.hash)
	f.exec(t, `INSERT INTO invitations (id, seat_id, nonce, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')`,
		f.invID, f.seatID, f.nonce)
	return f
}

func (f *invFixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.db.Pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

func (f *invFixture) state(t *testing.T) (storage.DeliveryState, int, string) {
	t.Helper()
	return f.stateOf(t, f.invID)
}

// start starts a delivery batch of ids and returns it; the test closes it.
func (f *invFixture) start(t *testing.T, ids ...string) *storage.DeliveryBatch {
	t.Helper()
	b, err := f.db.StartDeliveries(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// advisoryLocks counts the advisory locks held in the test's database.
func (f *invFixture) advisoryLocks(t *testing.T) int {
	t.Helper()
	var locks int
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil {
		t.Fatal(err)
	}
	return locks
}

func TestStartDeliveryLoadsWhatTheEmailNeeds(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	b := f.start(t, f.invID)
	defer b.Close()
	if len(b.Mail) != 1 {
		t.Fatalf("Mail = %+v, Skipped = %v; want the invitation", b.Mail, b.Skipped)
	}
	m := b.Mail[0]
	if m.InvitationID != f.invID || m.SeatID != f.seatID || !bytes.Equal(m.Nonce, f.nonce) || !bytes.Equal(m.TokenHash, f.hash) {
		t.Errorf("ids or secrets wrong: %+v", m)
	}
	if m.To != "peter@initech.test" || m.ProductName != "TPS Reports" || m.Organization != "Initech" || m.InviterEmail != "bill@initech.test" {
		t.Errorf("email fields wrong: %+v", m)
	}
	if m.State != storage.DeliveryQueued || m.Attempts != 0 || time.Until(m.ExpiresAt) < 23*time.Hour {
		t.Errorf("ledger fields wrong: %+v", m)
	}
}

func TestStartDeliveryCancelsDeadInvitations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, change, why string
	}{
		{"revoked", `UPDATE seats SET status = 'revoked', invitation_id = NULL, invitation_token_hash = NULL WHERE id = $1`, "seat is revoked"},
		{"claimed", `UPDATE seats SET status = 'claimed', invitation_id = NULL, invitation_token_hash = NULL WHERE id = $1`, "seat is claimed"},
		{"superseded", `UPDATE seats SET invitation_id = gen_random_uuid() WHERE id = $1`, "superseded"},
		{"expired", `UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE seat_id = $1`, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := invSetup(t)
			f.exec(t, tc.change, f.seatID)
			b := f.start(t, f.invID)
			defer b.Close()
			if err := b.Skipped[f.invID]; len(b.Mail) != 0 || !errors.Is(err, storage.ErrNotDeliverable) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("StartDeliveries: %v, want ErrNotDeliverable saying %q", err, tc.why)
			}
			if state, _, lastError := f.state(t); state != storage.DeliveryCancelled || !strings.Contains(lastError, tc.why) {
				t.Errorf("ledger: %s %q, want cancelled", state, lastError)
			}
		})
	}
	// Final states stay as they are.
	for _, final := range []storage.DeliveryState{storage.DeliverySent, storage.DeliveryFailed} {
		t.Run(string(final), func(t *testing.T) {
			t.Parallel()
			f := invSetup(t)
			f.exec(t, `UPDATE invitations SET delivery_state = $2 WHERE id = $1`, f.invID, string(final))
			f.exec(t, `UPDATE seats SET status = 'revoked', invitation_id = NULL WHERE id = $1`, f.seatID)
			b := f.start(t, f.invID)
			defer b.Close()
			if err := b.Skipped[f.invID]; !errors.Is(err, storage.ErrNotDeliverable) {
				t.Fatalf("StartDeliveries: %v, want ErrNotDeliverable", err)
			}
			if state, _, _ := f.state(t); state != final {
				t.Errorf("ledger: %s, want %s", state, final)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		f := invSetup(t)
		unknown := uuid.NewString()
		// Twice: the first batch must not leave the lock behind.
		for _, id := range []string{unknown, unknown, "not-a-uuid"} {
			b := f.start(t, id)
			b.Close()
			if err := b.Skipped[id]; events.ErrorCode(err) != events.CodeNotFound {
				t.Errorf("StartDeliveries(%q): %v, want not found", id, err)
			}
		}
		if locks := f.advisoryLocks(t); locks != 0 {
			t.Errorf("%d advisory locks left behind", locks)
		}
	})
}

func TestDeliveryLifecycle(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	b := f.start(t, f.invID)
	defer b.Close()
	if n, dead, err := b.MarkSending(ctx, []string{f.invID}); err != nil || len(dead) != 0 || n[f.invID] != 1 {
		t.Fatalf("MarkSending = %v, %v, %v", n, dead, err)
	}
	if state, attempts, _ := f.state(t); state != storage.DeliverySending || attempts != 1 {
		t.Fatalf("after MarkSending: %s, %d attempts", state, attempts)
	}
	if err := b.Record(ctx, storage.DeliveryOutcomes{Retry: map[string]string{f.invID: "451 4.7.1 greylisted"}}); err != nil {
		t.Fatal(err)
	}
	if state, _, lastError := f.state(t); state != storage.DeliveryQueued || lastError != "451 4.7.1 greylisted" {
		t.Fatalf("after a retry: %s %q", state, lastError)
	}
	if n, _, err := b.MarkSending(ctx, []string{f.invID}); err != nil || n[f.invID] != 2 {
		t.Fatalf("second MarkSending = %v, %v", n, err)
	}
	// A revoke that commits during the attempt cancels the invitation;
	// the email did go out, so sent wins.
	f.exec(t, `UPDATE invitations SET delivery_state = 'cancelled' WHERE id = $1`, f.invID)
	if err := b.Record(ctx, storage.DeliveryOutcomes{Sent: []string{f.invID}}); err != nil {
		t.Fatal(err)
	}
	st, err := f.db.InvitationDelivery(ctx, f.seatID)
	if err != nil {
		t.Fatal(err)
	}
	if st.InvitationID != f.invID || st.State != storage.DeliverySent || st.Attempts != 2 || st.SentAt == nil ||
		st.LastError != "451 4.7.1 greylisted" {
		t.Errorf("InvitationDelivery = %+v", st)
	}
}

// MarkSending rechecks the seat: a revoke committed after StartDeliveries
// stops the attempt.
func TestMarkSendingHonoursLateRevoke(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	b := f.start(t, f.invID)
	defer b.Close()
	f.exec(t, `UPDATE seats SET status = 'revoked', invitation_id = NULL, invitation_token_hash = NULL WHERE id = $1`, f.seatID)
	if _, dead, err := b.MarkSending(t.Context(), []string{f.invID}); err != nil || !errors.Is(dead[f.invID], storage.ErrNotDeliverable) {
		t.Fatalf("MarkSending: %v, %v; want ErrNotDeliverable", dead, err)
	}
	if state, attempts, _ := f.state(t); state != storage.DeliveryCancelled || attempts != 0 {
		t.Errorf("ledger: %s, %d attempts; want cancelled, 0", state, attempts)
	}
}

func TestMarkFailedClipsLongErrors(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	b := f.start(t, f.invID)
	defer b.Close()
	if err := b.Record(t.Context(), storage.DeliveryOutcomes{Failed: map[string]string{f.invID: "550 " + strings.Repeat("é", 2000)}}); err != nil {
		t.Fatal(err)
	}
	if state, _, lastError := f.state(t); state != storage.DeliveryFailed || len(lastError) > 1100 || !strings.HasPrefix(lastError, "550 ") {
		t.Errorf("ledger: %s, last_error of %d bytes", state, len(lastError))
	}
}

// One mailer at a time: a second StartDeliveries finds the invitation busy
// until the first closes, or until its connection dies.
func TestDeliveryLockIsExclusive(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	b := f.start(t, f.invID)
	second := f.start(t, f.invID)
	second.Close()
	if err := second.Skipped[f.invID]; len(second.Mail) != 0 || !errors.Is(err, storage.ErrDeliveryBusy) {
		t.Fatalf("second StartDeliveries: %v, want ErrDeliveryBusy", err)
	}
	b.Close()
	b.Close() // idempotent
	b = f.start(t, f.invID)
	if len(b.Mail) != 1 {
		t.Fatalf("after Close: %v", b.Skipped[f.invID])
	}
	if _, _, err := b.MarkSending(ctx, []string{f.invID}); err != nil {
		t.Fatal(err)
	}

	// The holder's connection dies (its process was killed, say): the
	// lock goes with it.
	f.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	var b2 *storage.DeliveryBatch
	deadline := time.Now().Add(5 * time.Second)
	for {
		b2 = f.start(t, f.invID)
		if len(b2.Mail) == 1 || time.Now().After(deadline) {
			break
		}
		b2.Close()
		time.Sleep(20 * time.Millisecond)
	}
	defer b2.Close()
	if len(b2.Mail) != 1 {
		t.Fatalf("StartDeliveries after the holder died: %v", b2.Skipped[f.invID])
	}
	if m := b2.Mail[0]; m.State != storage.DeliverySending || m.Attempts != 1 {
		t.Errorf("the new holder sees %s after %d attempts, want sending after 1", m.State, m.Attempts)
	}
	// The old holder may start no attempt without its locks, but can still
	// record its outcome, through the pool.
	if _, _, err := b.MarkSending(ctx, []string{f.invID}); err == nil {
		t.Error("MarkSending without the locks' connection succeeded")
	}
	if _, attempts, _ := f.state(t); attempts != 1 {
		t.Errorf("attempts = %d after a refused MarkSending, want 1", attempts)
	}
	if err := b.Record(ctx, storage.DeliveryOutcomes{Sent: []string{f.invID}}); err != nil {
		t.Errorf("recording sent without the lock's connection: %v", err)
	}
	b.Close()
}

// addInvitation adds another pending seat, for email, with an invitation
// to the fixture's subscription and returns the invitation's id.
func (f *invFixture) addInvitation(t *testing.T, email string) string {
	t.Helper()
	seatID, invID := uuid.NewString(), uuid.NewString()
	f.exec(t, `INSERT INTO seats (id, subscription_id, status, email, holder, invitation_id,
			invitation_token_hash, invitation_token_expires_at)
		SELECT $1, subscription_id, 'pending', $2::text, $2::text, $3, $4, now() + interval '1 day' FROM seats WHERE id = $5`,
		seatID, email, invID, secret.HashToken("token-of-"+invID), f.seatID)
	f.exec(t, `INSERT INTO invitations (id, seat_id, nonce, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')`,
		invID, seatID, secret.NewNonce())
	return invID
}

func (f *invFixture) stateOf(t *testing.T, invID string) (storage.DeliveryState, int, string) {
	t.Helper()
	var state string
	var attempts int
	var lastError *string
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT delivery_state, attempts, last_error FROM invitations WHERE id = $1`,
		invID).Scan(&state, &attempts, &lastError); err != nil {
		t.Fatal(err)
	}
	if lastError == nil {
		return storage.DeliveryState(state), attempts, ""
	}
	return storage.DeliveryState(state), attempts, *lastError
}

// One batch sorts its invitations: the deliverable ones in the order asked,
// each once; the rest each with its reason, the dead ones cancelled.
func TestStartDeliveriesSortsABatch(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	first := f.invID
	second := f.addInvitation(t, "milton@initech.test")
	revoked := f.addInvitation(t, "lumbergh@initech.test")
	f.exec(t, `UPDATE seats SET status = 'revoked', invitation_id = NULL, invitation_token_hash = NULL
		WHERE invitation_id = $1`, revoked)
	sent := f.addInvitation(t, "samir@initech.test")
	f.exec(t, `UPDATE invitations SET delivery_state = 'sent' WHERE id = $1`, sent)
	busy := f.addInvitation(t, "michael@initech.test")
	other := f.start(t, busy) // another mailer's batch
	defer other.Close()
	unknown := uuid.NewString()

	b := f.start(t, second, revoked, first, sent, second, unknown, "not-a-uuid", busy)
	if len(b.Mail) != 2 || b.Mail[0].InvitationID != second || b.Mail[1].InvitationID != first {
		t.Fatalf("Mail = %+v, want %s then %s", b.Mail, second, first)
	}
	if b.Mail[0].To != "milton@initech.test" {
		t.Errorf("second invitation to %q", b.Mail[0].To)
	}
	for id, want := range map[string]func(error) bool{
		revoked: func(err error) bool {
			return errors.Is(err, storage.ErrNotDeliverable) && strings.Contains(err.Error(), "seat is revoked")
		},
		sent: func(err error) bool {
			return errors.Is(err, storage.ErrNotDeliverable) && strings.Contains(err.Error(), "already sent")
		},
		busy:         func(err error) bool { return errors.Is(err, storage.ErrDeliveryBusy) },
		unknown:      func(err error) bool { return events.ErrorCode(err) == events.CodeNotFound },
		"not-a-uuid": func(err error) bool { return events.ErrorCode(err) == events.CodeNotFound },
	} {
		if !want(b.Skipped[id]) {
			t.Errorf("Skipped[%s] = %v", id, b.Skipped[id])
		}
	}
	if len(b.Skipped) != 5 {
		t.Errorf("Skipped = %v, want 5 entries", b.Skipped)
	}
	if state, _, why := f.stateOf(t, revoked); state != storage.DeliveryCancelled || why != "seat is revoked" {
		t.Errorf("revoked invitation: %s %q, want cancelled", state, why)
	}
	if state, _, _ := f.stateOf(t, sent); state != storage.DeliverySent {
		t.Errorf("sent invitation is now %s", state)
	}
	// Its locks (five: what it got, not the busy one) go at Close; the
	// other batch's stays.
	if n := f.advisoryLocks(t); n != 1+5 {
		t.Errorf("%d advisory locks, want 6", n)
	}
	b.Close()
	if n := f.advisoryLocks(t); n != 1 {
		t.Errorf("%d advisory locks after Close, want the other batch's 1", n)
	}
}

// A batch's attempts are marked and their outcomes recorded together, each
// invitation with its own outcome; an invitation that died in between is
// left out of the attempts, and a cancellation during an attempt yields to
// sent only.
func TestDeliveryBatchOutcomes(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	sent, retried, failed := f.invID, f.addInvitation(t, "milton@initech.test"), f.addInvitation(t, "samir@initech.test")
	lateRevoke, cancelledMeanwhile := f.addInvitation(t, "lumbergh@initech.test"), f.addInvitation(t, "michael@initech.test")
	ids := []string{sent, retried, failed, lateRevoke, cancelledMeanwhile}
	b := f.start(t, ids...)
	defer b.Close()
	if len(b.Mail) != len(ids) {
		t.Fatalf("Mail has %d of %d: %v", len(b.Mail), len(ids), b.Skipped)
	}
	f.exec(t, `UPDATE seats SET status = 'revoked', invitation_id = NULL, invitation_token_hash = NULL
		WHERE invitation_id = $1`, lateRevoke)
	attempts, dead, err := b.MarkSending(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 4 || attempts[lateRevoke] != 0 || !errors.Is(dead[lateRevoke], storage.ErrNotDeliverable) || len(dead) != 1 {
		t.Fatalf("MarkSending: attempts %v, dead %v; want all but the revoked one after 1 attempt", attempts, dead)
	}
	for _, id := range []string{sent, retried, failed, cancelledMeanwhile} {
		if attempts[id] != 1 {
			t.Errorf("attempts[%s] = %d, want 1", id, attempts[id])
		}
		if state, n, _ := f.stateOf(t, id); state != storage.DeliverySending || n != 1 {
			t.Errorf("%s: %s after %d attempts, want sending after 1", id, state, n)
		}
	}
	if state, n, why := f.stateOf(t, lateRevoke); state != storage.DeliveryCancelled || n != 0 || why != "seat is revoked" {
		t.Errorf("late revoke: %s after %d attempts (%q), want cancelled after 0", state, n, why)
	}

	f.exec(t, `UPDATE invitations SET delivery_state = 'cancelled' WHERE id = $1`, cancelledMeanwhile)
	err = b.Record(ctx, storage.DeliveryOutcomes{
		Sent:   []string{sent},
		Retry:  map[string]string{retried: "451 4.7.1 greylisted", cancelledMeanwhile: "451 again"},
		Failed: map[string]string{failed: "550 5.1.1 no such user"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		state storage.DeliveryState
		why   string
	}{
		sent:               {storage.DeliverySent, ""},
		retried:            {storage.DeliveryQueued, "451 4.7.1 greylisted"},
		failed:             {storage.DeliveryFailed, "550 5.1.1 no such user"},
		cancelledMeanwhile: {storage.DeliveryCancelled, ""},
	} {
		if state, _, why := f.stateOf(t, id); state != want.state || why != want.why {
			t.Errorf("%s: %s %q, want %s %q", id, state, why, want.state, want.why)
		}
	}

	// A statement that fails records nothing of the batch.
	if err := b.Record(ctx, storage.DeliveryOutcomes{Sent: []string{retried}, Failed: map[string]string{"not-a-uuid": "x"}}); err == nil {
		t.Fatal("Record with an invalid id succeeded")
	}
	if state, _, _ := f.stateOf(t, retried); state != storage.DeliveryQueued {
		t.Errorf("after a failed Record: %s, want queued still", state)
	}
}

// Two mailers whose batches overlap: the second gets only what the first
// does not hold, and once the first has recorded and let go, the second
// sees its outcome rather than an attempt in progress.
func TestOverlappingDeliveryBatches(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	a, shared, c := f.invID, f.addInvitation(t, "milton@initech.test"), f.addInvitation(t, "samir@initech.test")
	first := f.start(t, a, shared)
	defer first.Close()
	if _, _, err := first.MarkSending(ctx, []string{a, shared}); err != nil {
		t.Fatal(err)
	}
	second := f.start(t, shared, c)
	if len(second.Mail) != 1 || second.Mail[0].InvitationID != c || !errors.Is(second.Skipped[shared], storage.ErrDeliveryBusy) {
		t.Fatalf("second batch: Mail %+v, Skipped %v; want only %s, %s busy", second.Mail, second.Skipped, c, shared)
	}
	second.Close()
	if err := first.Record(ctx, storage.DeliveryOutcomes{Sent: []string{a, shared}}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	third := f.start(t, shared, c)
	defer third.Close()
	if err := third.Skipped[shared]; !errors.Is(err, storage.ErrNotDeliverable) || !strings.Contains(err.Error(), "already sent") {
		t.Errorf("after the first batch: %v, want already sent", err)
	}
	if len(third.Mail) != 1 || third.Mail[0].InvitationID != c || third.Mail[0].State != storage.DeliveryQueued {
		t.Errorf("third batch: Mail %+v", third.Mail)
	}
}

func TestInvitationDeliveryShowsLatest(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	newer := uuid.NewString()
	f.exec(t, `INSERT INTO invitations (id, seat_id, nonce, expires_at, created_at)
		VALUES ($1, $2, $3, now() + interval '1 day', now() + interval '1 second')`, newer, f.seatID, secret.NewNonce())
	st, err := f.db.InvitationDelivery(ctx, f.seatID)
	if err != nil {
		t.Fatal(err)
	}
	if st.InvitationID != newer || st.State != storage.DeliveryQueued || st.Attempts != 0 || st.SentAt != nil {
		t.Errorf("InvitationDelivery = %+v, want the newer, queued invitation", st)
	}
	for _, seat := range []string{uuid.NewString(), "nope"} {
		if _, err := f.db.InvitationDelivery(ctx, seat); events.ErrorCode(err) != events.CodeNotFound {
			t.Errorf("InvitationDelivery(%q): %v, want not found", seat, err)
		}
	}
}
