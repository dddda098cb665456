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
	var state string
	var attempts int
	var lastError *string
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT delivery_state, attempts, last_error FROM invitations WHERE id = $1`,
		f.invID).Scan(&state, &attempts, &lastError); err != nil {
		t.Fatal(err)
	}
	if lastError == nil {
		return storage.DeliveryState(state), attempts, ""
	}
	return storage.DeliveryState(state), attempts, *lastError
}

func TestStartDeliveryLoadsWhatTheEmailNeeds(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	d, err := f.db.StartDelivery(t.Context(), f.invID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := d.Mail
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
			_, err := f.db.StartDelivery(t.Context(), f.invID)
			if !errors.Is(err, storage.ErrNotDeliverable) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("StartDelivery: %v, want ErrNotDeliverable saying %q", err, tc.why)
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
			if _, err := f.db.StartDelivery(t.Context(), f.invID); !errors.Is(err, storage.ErrNotDeliverable) {
				t.Fatalf("StartDelivery: %v, want ErrNotDeliverable", err)
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
		// Twice: the first call must not leave the lock behind.
		for _, id := range []string{unknown, unknown, "not-a-uuid"} {
			if _, err := f.db.StartDelivery(t.Context(), id); events.ErrorCode(err) != events.CodeNotFound {
				t.Errorf("StartDelivery(%q): %v, want not found", id, err)
			}
		}
		var locks int
		if err := f.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil {
			t.Fatal(err)
		}
		if locks != 0 {
			t.Errorf("%d advisory locks left behind", locks)
		}
	})
}

func TestDeliveryLifecycle(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	d, err := f.db.StartDelivery(ctx, f.invID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.MarkSending(ctx); err != nil || n != 1 {
		t.Fatalf("MarkSending = %d, %v", n, err)
	}
	if state, attempts, _ := f.state(t); state != storage.DeliverySending || attempts != 1 {
		t.Fatalf("after MarkSending: %s, %d attempts", state, attempts)
	}
	if err := d.MarkRetry(ctx, "451 4.7.1 greylisted"); err != nil {
		t.Fatal(err)
	}
	if state, _, lastError := f.state(t); state != storage.DeliveryQueued || lastError != "451 4.7.1 greylisted" {
		t.Fatalf("after MarkRetry: %s %q", state, lastError)
	}
	if n, err := d.MarkSending(ctx); err != nil || n != 2 {
		t.Fatalf("second MarkSending = %d, %v", n, err)
	}
	// A revoke that commits during the attempt cancels the invitation;
	// the email did go out, so sent wins.
	f.exec(t, `UPDATE invitations SET delivery_state = 'cancelled' WHERE id = $1`, f.invID)
	if err := d.MarkSent(ctx); err != nil {
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

// MarkSending rechecks the seat: a revoke committed after StartDelivery
// stops the attempt.
func TestMarkSendingHonoursLateRevoke(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	d, err := f.db.StartDelivery(t.Context(), f.invID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f.exec(t, `UPDATE seats SET status = 'revoked', invitation_id = NULL, invitation_token_hash = NULL WHERE id = $1`, f.seatID)
	if _, err := d.MarkSending(t.Context()); !errors.Is(err, storage.ErrNotDeliverable) {
		t.Fatalf("MarkSending: %v, want ErrNotDeliverable", err)
	}
	if state, attempts, _ := f.state(t); state != storage.DeliveryCancelled || attempts != 0 {
		t.Errorf("ledger: %s, %d attempts; want cancelled, 0", state, attempts)
	}
}

func TestMarkFailedClipsLongErrors(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	d, err := f.db.StartDelivery(t.Context(), f.invID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.MarkFailed(t.Context(), "550 "+strings.Repeat("é", 2000)); err != nil {
		t.Fatal(err)
	}
	if state, _, lastError := f.state(t); state != storage.DeliveryFailed || len(lastError) > 1100 || !strings.HasPrefix(lastError, "550 ") {
		t.Errorf("ledger: %s, last_error of %d bytes", state, len(lastError))
	}
}

// One mailer at a time: a second StartDelivery finds the invitation busy
// until the first closes, or until its connection dies.
func TestDeliveryLockIsExclusive(t *testing.T) {
	t.Parallel()
	f := invSetup(t)
	ctx := t.Context()
	d, err := f.db.StartDelivery(ctx, f.invID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.StartDelivery(ctx, f.invID); !errors.Is(err, storage.ErrDeliveryBusy) {
		t.Fatalf("second StartDelivery: %v, want ErrDeliveryBusy", err)
	}
	d.Close()
	d.Close() // idempotent
	d, err = f.db.StartDelivery(ctx, f.invID)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := d.MarkSending(ctx); err != nil {
		t.Fatal(err)
	}

	// The holder's connection dies (its process was killed, say): the
	// lock goes with it.
	f.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	var d2 *storage.Delivery
	deadline := time.Now().Add(5 * time.Second)
	for {
		d2, err = f.db.StartDelivery(ctx, f.invID)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("StartDelivery after the holder died: %v", err)
	}
	defer d2.Close()
	if d2.Mail.State != storage.DeliverySending || d2.Mail.Attempts != 1 {
		t.Errorf("the new holder sees %s after %d attempts, want sending after 1", d2.Mail.State, d2.Mail.Attempts)
	}
	// The old holder can still record its outcome, through the pool.
	if err := d.MarkSent(ctx); err != nil {
		t.Errorf("MarkSent without the lock's connection: %v", err)
	}
	d.Close()
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
