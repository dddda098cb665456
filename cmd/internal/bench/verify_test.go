package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// applied is a database after a small load through the worker's own code
// path: two pools of 3 seats, 4 requests each (so one each is refused),
// every other one an immediate claim.
func applied(t *testing.T) (*storage.DB, Expect) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	keys, err := secret.NewKeys([]byte("bench-test-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	exp := Expect{Demand: map[string]int{}}
	var reqs []events.Request
	for p := 0; p < 2; p++ {
		org, err := db.CreateOrganization(ctx, "Org", true, false)
		if err != nil {
			t.Fatal(err)
		}
		cust, err := db.CreateCustomer(ctx, org, fmt.Sprintf("buyer-%d@example.com", p), "")
		if err != nil {
			t.Fatal(err)
		}
		sub := storagetest.Pool(t, db, "subscription", cust, "Plan", 3, "active")
		for i := 0; i < 4; i++ {
			reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: cust,
				Assign:      &events.SeatAssign{SubscriptionID: sub, Email: fmt.Sprintf("u%d@example.com", i), ImmediateClaim: i%2 == 0},
				SubmittedAt: time.Now().UTC()})
			exp.Demand[sub]++
			exp.Requests++
		}
	}
	for _, r := range reqs {
		if _, err := db.Apply(ctx, storage.Settings{Keys: keys}, []events.Request{r}); err != nil {
			t.Fatal(err)
		}
	}
	return db, exp
}

func TestVerifyPassesACleanRun(t *testing.T) {
	db, exp := applied(t)
	o, err := Verify(context.Background(), db, exp)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if o.Requests != 8 || o.Applied != 6 || o.Refused != 2 || o.RefusedBy[string(events.CodeNoAvailableSeats)] != 2 || o.DeadLettered != 0 {
		t.Fatalf("outcome %s, want 8 requests: 6 applied, 2 refused no_available_seats", o)
	}
}

// Each way a run can break its promises makes Verify fail, naming it.
func TestVerifyCatchesBrokenPromises(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, db *storage.DB, exp *Expect)
		want  string
	}{
		{"request lost", func(t *testing.T, db *storage.DB, exp *Expect) {
			exp.Requests++
		}, "9 requests sent but 8 in the ledger"},
		{"request left queued", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `UPDATE requests SET status = 'queued', code = NULL, result = NULL
				WHERE id = (SELECT id FROM requests WHERE status = 'failed' LIMIT 1)`)
		}, "1 requests still queued"},
		{"counter drifted", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `UPDATE subscriptions SET seats_used = seats_used - 1
				WHERE id = (SELECT id FROM subscriptions LIMIT 1)`)
		}, "seats_used 2 but 3 live seats"},
		{"over capacity", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_capacity`)
			mustExec(t, db, `UPDATE subscriptions SET seats = 2 WHERE id = (SELECT id FROM subscriptions LIMIT 1)`)
		}, "over capacity: 3 live seats, 2 seats"},
		{"duplicate seat", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `DROP INDEX seats_one_per_holder`)
			mustExec(t, db, `INSERT INTO seats (id, subscription_id, status, customer_id, email, holder, claimed_at)
				SELECT gen_random_uuid(), subscription_id, status, customer_id, email, holder, claimed_at
				FROM seats WHERE status = 'claimed' LIMIT 1`)
		}, "1 holders have more than one live seat"},
		{"refused for another reason", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `UPDATE requests SET code = 'not_found' WHERE status = 'failed'`)
		}, `refused with "not_found"`},
		{"refused although seats were free", func(t *testing.T, db *storage.DB, exp *Expect) {
			mustExec(t, db, `UPDATE subscriptions SET seats = seats + 1`)
		}, "want 4 applied, got 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, exp := applied(t)
			c.spoil(t, db, &exp)
			_, err := Verify(context.Background(), db, exp)
			if err == nil {
				t.Fatal("verify passed a broken run")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("verify said %q, want it to say %q", err, c.want)
			}
		})
	}
}

func mustExec(t *testing.T, db *storage.DB, sql string) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
