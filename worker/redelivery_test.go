package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
)

func assignRequest(ten seatdtest.Tenant, email string) events.Request {
	return events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.CustomerID,
		Assign: &events.SeatAssign{SubscriptionID: ten.SubscriptionID, Email: email}, SubmittedAt: time.Now().UTC()}
}

func publish(t *testing.T, e *seatdtest.Env, r events.Request, msgID string) *jetstream.PubAck {
	t.Helper()
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := e.JS.Publish(context.Background(), events.RequestsSubject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func waitStreamEmpty(t *testing.T, e *seatdtest.Env) {
	t.Helper()
	seatdtest.WaitFor(t, 10*time.Second, "requests stream drained", func() bool {
		info, err := seatdtest.Must(e.JS.Stream(context.Background(), events.RequestsStream)).Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
}

// TestDuplicatePublish is promise 2 at the broker: the same request
// published twice with the same Nats-Msg-Id is stored once and makes one
// seat.
func TestDuplicatePublish(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := assignRequest(ten, "dup@example.com")
	publish(t, e, r, r.ID)
	if ack := publish(t, e, r, r.ID); !ack.Duplicate {
		t.Error("second publish was not recognised as a duplicate")
	}
	e.WaitApplied(r.ID)
	waitStreamEmpty(t, e)
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats, want 1", n)
	}
}

// TestDuplicateBeyondDedupeWindow: a copy the broker does not catch (past
// its dedupe window, or replayed from the dead-letter stream) is caught by
// the request ledger.
func TestDuplicateBeyondDedupeWindow(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := assignRequest(ten, "late@example.com")
	publish(t, e, r, r.ID)
	e.WaitApplied(r.ID)
	publish(t, e, r, "another-msg-id") // the broker sees a new message
	waitStreamEmpty(t, e)
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats, want 1", n)
	}
}

// TestRedeliveryAfterCommitBeforeAck: a worker that committed the seat but
// died before acking leaves the message in the stream; the next worker
// gets it again and must not make a second seat.
func TestRedeliveryAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1})
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := assignRequest(ten, "crash@example.com")
	publish(t, e, r, r.ID)
	// The dead worker's transaction: committed, never acked.
	res, err := e.DB.Apply(context.Background(), e.Settings, []events.Request{r})
	if err != nil || !res[0].OK() {
		t.Fatalf("apply: %v %+v", err, res)
	}
	e.StartWorker()
	waitStreamEmpty(t, e)
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats after redelivery, want 1", n)
	}
	var deliveries int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT deliveries FROM requests WHERE id = $1`, r.ID).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	if deliveries != 2 {
		t.Errorf("ledger saw %d deliveries, want 2", deliveries)
	}
}
