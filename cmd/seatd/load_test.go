package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// Load for the fault tests, and the end state every one of them checks.

// tenant is a customer who bought a pool of seats, with a session.
type tenant struct {
	customerID string
	subID      string
	token      string
	seats      int
}

// provision creates n organizations, each with one customer and one
// subscription of the given number of seats.
func provision(t testing.TB, db *storage.DB, n, seats int) []tenant {
	t.Helper()
	ctx := context.Background()
	out := make([]tenant, n)
	for i := range out {
		org, err := db.CreateOrganization(ctx, fmt.Sprintf("Org %d", i), true, false)
		if err != nil {
			t.Fatal(err)
		}
		cust, err := db.CreateCustomer(ctx, org, fmt.Sprintf("buyer-%d@example.com", i), "")
		if err != nil {
			t.Fatal(err)
		}
		sub := storagetest.Pool(t, db, "subscription", cust, "Team plan", seats, "active")
		tok, _, err := db.CreateSession(ctx, cust, "", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = tenant{customerID: cust, subID: sub, token: tok, seats: seats}
	}
	return out
}

// assignLoad returns n assign requests spread round-robin over the
// tenants' pools: every 10th claims its seat at once, every 25th repeats
// an email already used in its pool (already_assigned, unless the pool is
// full by then), the rest are distinct. With more distinct emails than
// seats, every pool ends exactly full and the rest is refused.
func assignLoad(tenants []tenant, n int) []events.Request {
	reqs := make([]events.Request, n)
	now := time.Now().UTC()
	for i := range reqs {
		ten := tenants[i%len(tenants)]
		k := i / len(tenants) // index within the pool
		email := fmt.Sprintf("user-%d@example.com", k)
		if k > 0 && k%25 == 0 {
			email = fmt.Sprintf("user-%d@example.com", k/2)
		}
		reqs[i] = events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.customerID,
			Assign:      &events.SeatAssign{SubscriptionID: ten.subID, Email: email, ImmediateClaim: k%10 == 7},
			SubmittedAt: now}
	}
	return reqs
}

func ids(reqs []events.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.ID
	}
	return out
}

// publishResult is what a publisher got from JetStream.
type publishResult struct {
	acked   int // requests JetStream acknowledged (stored, or a known duplicate)
	retries int // chunks published again after an error
	err     error
}

// publishPaced publishes reqs to the requests stream in chunks of chunk
// every interval, like a steady stream of clients. A chunk that fails (the
// server went away) is published again, under the same Nats-Msg-Ids so
// JetStream drops the copies, until it is acknowledged or ctx ends.
func publishPaced(ctx context.Context, js jetstream.JetStream, reqs []events.Request, chunk int, interval time.Duration) publishResult {
	var res publishResult
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for start := 0; start < len(reqs); start += chunk {
		part := reqs[start:min(start+chunk, len(reqs))]
		for {
			bad, err := ingress.PublishAll(ctx, js, part)
			if len(bad) > 0 {
				res.err = fmt.Errorf("request %s cannot be published: %w", bad[0].Request.ID, bad[0].Err)
				return res
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				res.err = fmt.Errorf("publishing %d..%d: %w (last: %v)", start, start+len(part), ctx.Err(), err)
				return res
			}
			res.retries++
			time.Sleep(100 * time.Millisecond)
		}
		res.acked += len(part)
		select {
		case <-tick.C:
		case <-ctx.Done():
			res.err = ctx.Err()
			return res
		}
	}
	return res
}

// progress is how far the deployment got with a set of requests.
func progress(ctx context.Context, r *rig, reqIDs []string) (done, inStream int, err error) {
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1::uuid[]) AND status <> 'queued'`,
		reqIDs).Scan(&done); err != nil {
		return 0, 0, err
	}
	s, err := r.js.Stream(ctx, events.RequestsStream)
	if err != nil {
		return done, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return done, 0, err
	}
	return done, int(info.State.Msgs), nil
}

// waitSettled waits until every request has an outcome in the ledger and
// the requests stream is empty.
func waitSettled(t testing.TB, r *rig, reqIDs []string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "every request applied and the stream drained", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done, inStream, err := progress(ctx, r, reqIDs)
		return err == nil && done == len(reqIDs) && inStream == 0,
			fmt.Sprintf("%d/%d with an outcome, %d in the stream, err %v", done, len(reqIDs), inStream, err)
	})
}

// outcome is the end state of a set of requests, from the ledger.
type outcome struct {
	accepted     int
	applied      int            // succeeded
	refused      map[string]int // failed, by code, dead letters excepted
	deadLettered int
	lost         int // accepted but without a ledger row
	queued       int // in the ledger without an outcome
	replayed     int // applied more than once: the ledger returned the recorded answer
}

func (o outcome) refusedTotal() int {
	n := 0
	for _, c := range o.refused {
		n += c
	}
	return n
}

func (o outcome) String() string {
	codes := make([]string, 0, len(o.refused))
	for c, n := range o.refused {
		codes = append(codes, fmt.Sprintf("%s:%d", c, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("accepted=%d applied=%d refused=%d (%s) dead-lettered=%d lost=%d replayed-from-ledger=%d",
		o.accepted, o.applied, o.refusedTotal(), strings.Join(codes, " "), o.deadLettered, o.lost, o.replayed)
}

// checkOutcome reads the outcome of the accepted requests and checks the
// promises on the whole database, which holds this test's data only:
//
//   - every accepted request has exactly one ledger row, with an outcome
//     (applied, refused or dead-lettered): none lost, none left queued;
//   - exactly-once effect: one seat per applied request, each seat named by
//     exactly one result, and no seat that no result names;
//   - no oversell: every pool's seats_used equals its live seats and is
//     within its capacity; no holder has two live seats in a pool;
//   - immediate claims are claimed, every other seat has one invitation.
func checkOutcome(t testing.TB, db *storage.DB, accepted []string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := outcome{accepted: len(accepted), refused: map[string]int{}}
	rows, err := db.Pool.Query(ctx, `SELECT status, coalesce(code, ''), count(*), count(*) FILTER (WHERE deliveries > 1)
		FROM requests WHERE id = ANY($1::uuid[]) GROUP BY 1, 2`, accepted)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for rows.Next() {
		var status, code string
		var n, replayed int
		if err := rows.Scan(&status, &code, &n, &replayed); err != nil {
			t.Fatal(err)
		}
		found += n
		o.replayed += replayed
		switch {
		case status == "queued":
			o.queued += n
		case status == "succeeded":
			o.applied += n
		case code == string(events.CodeDeadLettered):
			o.deadLettered += n
		default:
			o.refused[code] += n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	o.lost = len(accepted) - found
	if o.lost != 0 {
		t.Errorf("%d accepted requests have no ledger row: lost", o.lost)
	}
	if o.queued != 0 {
		t.Errorf("%d accepted requests are still queued", o.queued)
	}

	var seats, succeeded, named, distinctNamed, claimed, immediate, pending, invitations int
	if err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM seats),
			(SELECT count(*) FROM requests WHERE op = 'assign' AND status = 'succeeded'),
			(SELECT count(*) FROM requests r JOIN seats s ON s.id = (r.result->'seat'->>'id')::uuid
				WHERE r.op = 'assign' AND r.status = 'succeeded'),
			(SELECT count(DISTINCT r.result->'seat'->>'id') FROM requests r WHERE r.op = 'assign' AND r.status = 'succeeded'),
			(SELECT count(*) FROM seats WHERE status = 'claimed'),
			(SELECT count(*) FROM requests WHERE op = 'assign' AND status = 'succeeded'
				AND (payload #>> '{assign,immediate_claim}')::boolean IS TRUE),
			(SELECT count(*) FROM seats WHERE status = 'pending'),
			(SELECT count(*) FROM invitations)`).
		Scan(&seats, &succeeded, &named, &distinctNamed, &claimed, &immediate, &pending, &invitations); err != nil {
		t.Fatal(err)
	}
	if seats != succeeded || named != succeeded || distinctNamed != succeeded {
		t.Errorf("exactly-once broken: %d seats, %d applied assigns naming %d existing seats (%d distinct)",
			seats, succeeded, named, distinctNamed)
	}
	if claimed != immediate {
		t.Errorf("%d claimed seats, but %d immediate claims applied", claimed, immediate)
	}
	if invitations != pending {
		t.Errorf("%d invitations for %d pending seats", invitations, pending)
	}

	prow, err := db.Pool.Query(ctx, `SELECT p.id, p.seats, p.seats_used,
			(SELECT count(*) FROM seats s WHERE s.subscription_id = p.id AND s.status IN ('pending', 'claimed'))
		FROM subscriptions p`)
	if err != nil {
		t.Fatal(err)
	}
	for prow.Next() {
		var id string
		var capacity, used, live int
		if err := prow.Scan(&id, &capacity, &used, &live); err != nil {
			t.Fatal(err)
		}
		if used != live || live > capacity {
			t.Errorf("pool %s: capacity %d, seats_used %d, live seats %d", id, capacity, used, live)
		}
	}
	if err := prow.Err(); err != nil {
		t.Fatal(err)
	}
	var dupHolders int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM seats WHERE status IN ('pending', 'claimed')
		GROUP BY coalesce(subscription_id, order_id), holder HAVING count(*) > 1) d`).Scan(&dupHolders); err != nil {
		t.Fatal(err)
	}
	if dupHolders != 0 {
		t.Errorf("%d holders have more than one live seat in a pool", dupHolders)
	}
	return o
}

// checkPoolsFull checks that every pool ended exactly full: the load has
// more distinct recipients than seats, so however the requests raced, each
// pool's seats were all handed out and the rest refused.
func checkPoolsFull(t testing.TB, o outcome, tenants []tenant) {
	t.Helper()
	want := 0
	for _, ten := range tenants {
		want += ten.seats
	}
	if o.applied != want {
		t.Errorf("%d requests applied, want %d (every pool full)", o.applied, want)
	}
}

// heldByWorkers is how many requests the workers hold unacknowledged.
func heldByWorkers(ctx context.Context, js jetstream.JetStream) int {
	c, err := js.Consumer(ctx, events.RequestsStream, events.WorkerConsumer)
	if err != nil {
		return -1
	}
	info, err := c.Info(ctx)
	if err != nil {
		return -1
	}
	return info.NumAckPending
}

// deadLetters counts the messages in the dead-letter stream.
func deadLetters(t testing.TB, js jetstream.JetStream) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}
