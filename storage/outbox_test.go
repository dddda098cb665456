package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestRelayOutbox: the seat transaction leaves one mail request and one
// seat event per invitation in the outbox; the relay hands them over oldest
// first (each seat's mail request before its event, seats in commit order),
// keeps them when publishing fails, deletes them once it succeeds, and
// relays nothing while another replica holds the relay.
func TestRelayOutbox(t *testing.T) {
	ctx := t.Context()
	db := openDB(t)
	org, err := db.CreateOrganization(ctx, "Acme", true, false)
	if err != nil {
		t.Fatal(err)
	}
	buyer, err := db.CreateCustomer(ctx, org, "buyer@acme.test", "")
	if err != nil {
		t.Fatal(err)
	}
	sub := storagetest.Pool(t, db, "subscription", buyer, "Pro", 5, "active")
	var seats []string
	for _, email := range []string{"a@acme.test", "b@acme.test"} {
		res, err := db.Apply(ctx, storage.Settings{Keys: testKeys(t)}, []events.Request{{ID: uuid.NewString(), Op: events.OpAssign,
			CustomerID: buyer, Assign: &events.SeatAssign{SubscriptionID: sub, Email: email}, SubmittedAt: time.Now().UTC()}})
		if err != nil || !res[0].OK() {
			t.Fatalf("assign %s: %v %+v", email, err, res)
		}
		seats = append(seats, res[0].Seat.ID)
	}

	boom := errors.New("stream away")
	if n, err := db.RelayOutbox(ctx, 10, func(context.Context, []storage.OutboxMessage) error { return boom }); !errors.Is(err, boom) || n != 0 {
		t.Fatalf("failed publish: relayed %d, %v", n, err)
	}
	if got := outboxRows(t, db); got != 4 {
		t.Fatalf("after a failed publish the outbox holds %d rows, want all 4", got)
	}

	// Another replica holds the relay: this one relays nothing.
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := db.RelayOutbox(ctx, 10, func(context.Context, []storage.OutboxMessage) error {
			close(held)
			<-release
			return boom
		})
		done <- err
	}()
	<-held
	if n, err := db.RelayOutbox(ctx, 10, func(context.Context, []storage.OutboxMessage) error {
		t.Error("published while another replica holds the relay")
		return nil
	}); err != nil || n != 0 {
		t.Errorf("second relay: %d, %v", n, err)
	}
	close(release)
	if err := <-done; !errors.Is(err, boom) {
		t.Fatal(err)
	}

	var got []storage.OutboxMessage
	n, err := db.RelayOutbox(ctx, 10, func(_ context.Context, msgs []storage.OutboxMessage) error {
		got = msgs
		return nil
	})
	if err != nil || n != 4 {
		t.Fatalf("relay: %d, %v", n, err)
	}
	want := []struct{ subject, seat string }{
		{events.MailSubject, seats[0]}, {events.SeatEventSubject(events.SeatAssigned), seats[0]},
		{events.MailSubject, seats[1]}, {events.SeatEventSubject(events.SeatAssigned), seats[1]},
	}
	for i, m := range got {
		var body struct {
			SeatID string `json:"seat_id"`
			Data   struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &body); err != nil {
			t.Fatal(err)
		}
		seat := body.SeatID + body.Data.ID
		if m.Subject != want[i].subject || seat != want[i].seat || m.MsgID == "" {
			t.Errorf("message %d: %s %s (msg id %q), want %s %s", i, m.Subject, seat, m.MsgID, want[i].subject, want[i].seat)
		}
	}
	if left := outboxRows(t, db); left != 0 {
		t.Errorf("%d rows left in the outbox after a successful relay", left)
	}
}

func outboxRows(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
