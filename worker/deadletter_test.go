package worker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/worker"
)

// TestPoisonRequestIsDeadLettered: a request that fails the same way every
// time is tried a bounded number of times, moved to the dead-letter stream
// with its reason and delivery count, and its caller gets an answer. Once
// the cause is fixed, a replay applies it exactly once.
func TestPoisonRequestIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{MaxDeliveries: 3, SyncTimeout: 20 * time.Second})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 5})
	// A bug in the database that rejects one recipient, every time.
	if _, err := e.DB.Pool.Exec(ctx, `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF lower(NEW.email) = 'poison@example.com' OR NEW.customer_id IN
				(SELECT id FROM customers WHERE lower(email) = 'poison@example.com') THEN
				RAISE EXCEPTION 'poisoned row';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON seats FOR EACH ROW EXECUTE FUNCTION poison();`); err != nil {
		t.Fatal(err)
	}
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "poison@example.com"})
	if r.Status != 500 || r.JSON(t)["error"] != "RequestDeadLettered" {
		t.Fatalf("poison request: %d %s", r.Status, r.Body)
	}
	// Its neighbours are unaffected.
	if ok := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "fine@example.com"}); ok.Status != 200 {
		t.Errorf("neighbour: %d %s", ok.Status, ok.Body)
	}

	dl := &worker.DeadLetters{DB: e.DB, JS: e.JS}
	list, err := dl.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("dead letters: %v %+v", err, list)
	}
	if list[0].Deliveries != 3 || list[0].Reason == "" || list[0].RequestID == "" {
		t.Errorf("dead letter %+v", list[0])
	}
	// A poll gets the failure too.
	poll := e.Do("GET", seatsPath+"/requests/"+list[0].RequestID, ten.Token, nil).JSON(t)
	if poll["status"] != "failed" || poll["error"].(map[string]any)["error"] != "RequestDeadLettered" {
		t.Errorf("poll after dead letter: %v", poll)
	}

	// Fix the cause and replay: the seat appears once.
	if _, err := e.DB.Pool.Exec(ctx, `DROP TRIGGER poison ON seats`); err != nil {
		t.Fatal(err)
	}
	if _, err := dl.Replay(ctx, list[0].Seq); err != nil {
		t.Fatal(err)
	}
	seatdtest.WaitFor(t, 10*time.Second, "replayed request applied", func() bool {
		return e.Do("GET", seatsPath+"/requests/"+list[0].RequestID, ten.Token, nil).JSON(t)["status"] == "succeeded"
	})
	if left, _ := dl.List(ctx); len(left) != 0 {
		t.Errorf("dead letter still listed after replay: %+v", left)
	}
	// Replaying a request that was applied changes nothing: publish the
	// same request again as if replayed twice.
	var payload []byte
	if err := e.DB.Pool.QueryRow(ctx, `SELECT payload FROM requests WHERE id = $1`, list[0].RequestID).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	req, err := events.DecodeRequest(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Reopen(ctx, req.ID); err != nil {
		t.Fatal(err)
	}
	publish(t, e, req, "replay-again-"+strconv.Itoa(1))
	waitStreamEmpty(t, e)
	var n int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM seats s JOIN customers c ON c.id = s.customer_id
		WHERE lower(c.email) = 'poison@example.com'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d seats for the replayed request, want 1", n)
	}
}

// TestUndecodableMessageIsDeadLettered: garbage on the requests subject
// never reaches Postgres and never loops.
func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	if _, err := e.JS.Publish(ctx, events.RequestsSubject, []byte(`{"op":"assign","id":"not-a-uuid"}`)); err != nil {
		t.Fatal(err)
	}
	dl := &worker.DeadLetters{DB: e.DB, JS: e.JS}
	seatdtest.WaitFor(t, 10*time.Second, "dead letter", func() bool {
		l, _ := dl.List(ctx)
		return len(l) == 1
	})
	waitStreamEmpty(t, e)
	got, _ := dl.List(ctx)
	if got[0].Deliveries != 1 || got[0].RequestID != "" {
		t.Errorf("dead letter %+v", got[0])
	}
	if n, err := dl.Purge(ctx); err != nil || n != 1 {
		t.Errorf("purge: %d %v", n, err)
	}
}
