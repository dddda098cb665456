package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// Expect is what a benchmark's load should have produced. Each mode runs
// on a database of its own, so the checks cover the whole database.
type Expect struct {
	Requests int            // assign requests sent (each must have an outcome)
	Demand   map[string]int // subscription id → requests sent to it
}

// Outcome is the end state of a benchmark's requests, read from the ledger.
type Outcome struct {
	Requests     int
	Applied      int
	Refused      int
	RefusedBy    map[string]int
	DeadLettered int
}

func (o Outcome) String() string {
	codes := make([]string, 0, len(o.RefusedBy))
	for c, n := range o.RefusedBy {
		codes = append(codes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(codes)
	s := fmt.Sprintf("%d requests: %d applied, %d refused", o.Requests, o.Applied, o.Refused)
	if len(codes) > 0 {
		s += " (" + strings.Join(codes, ", ") + ")"
	}
	return s + fmt.Sprintf(", %d dead-lettered", o.DeadLettered)
}

// Verify checks the promises a benchmark must keep before its figures
// mean anything, on a database that holds only the benchmark's data:
//
//   - every request is accounted for: exactly one ledger row each, with an
//     outcome (applied, refused with a reason, or dead-lettered), none
//     left queued;
//   - no pool over capacity, and every pool's seats_used equals its live
//     seats; each pool applied exactly min(capacity, requests sent to it)
//     (counting dead letters, which are reported), and every refusal is
//     no_available_seats (the load has no other reason to refuse);
//   - no duplicate seat: no holder with two live seats in a pool, one seat
//     per applied request and no seat without one;
//   - immediate claims are claimed, every other seat has one invitation.
//
// It only reads. The error lists every broken check.
func Verify(ctx context.Context, db *storage.DB, exp Expect) (Outcome, error) {
	o := Outcome{RefusedBy: map[string]int{}}
	var problems []error
	fail := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	rows, err := db.Pool.Query(ctx, `SELECT status, coalesce(code, ''), count(*) FROM requests WHERE op = 'assign' GROUP BY 1, 2`)
	if err != nil {
		return o, err
	}
	queued := 0
	for rows.Next() {
		var status, code string
		var n int
		if err := rows.Scan(&status, &code, &n); err != nil {
			rows.Close()
			return o, err
		}
		o.Requests += n
		switch {
		case status == "queued":
			queued += n
		case status == "succeeded":
			o.Applied += n
		case code == string(events.CodeDeadLettered):
			o.DeadLettered += n
		default:
			o.Refused += n
			o.RefusedBy[code] += n
		}
	}
	if err := rows.Err(); err != nil {
		return o, err
	}
	if o.Requests != exp.Requests {
		fail("%d requests sent but %d in the ledger", exp.Requests, o.Requests)
	}
	if queued != 0 {
		fail("%d requests still queued: not accounted for", queued)
	}
	for code, n := range o.RefusedBy {
		if code != string(events.CodeNoAvailableSeats) {
			fail("%d requests refused with %q, which this load should never cause", n, code)
		}
	}

	// Per pool: capacity, counter, live seats, applied and dead-lettered
	// requests naming it.
	prows, err := db.Pool.Query(ctx, `SELECT p.id::text, p.seats, p.seats_used,
			(SELECT count(*) FROM seats s WHERE s.subscription_id = p.id AND s.status IN ('pending', 'claimed')),
			(SELECT count(*) FROM requests r WHERE r.op = 'assign' AND r.status = 'succeeded'
				AND r.payload #>> '{assign,subscription_id}' = p.id::text),
			(SELECT count(*) FROM requests r WHERE r.op = 'assign' AND r.code = $1
				AND r.payload #>> '{assign,subscription_id}' = p.id::text)
		FROM subscriptions p`, events.CodeDeadLettered)
	if err != nil {
		return o, err
	}
	seen := 0
	for prows.Next() {
		var id string
		var capacity, used, live, applied, dead int
		if err := prows.Scan(&id, &capacity, &used, &live, &applied, &dead); err != nil {
			prows.Close()
			return o, err
		}
		demand, ok := exp.Demand[id]
		if !ok {
			continue // a pool the load did not use
		}
		seen++
		if live > capacity {
			fail("pool %s over capacity: %d live seats, %d seats", id, live, capacity)
		}
		if used != live {
			fail("pool %s: seats_used %d but %d live seats", id, used, live)
		}
		if applied != live {
			fail("pool %s: %d applied requests but %d live seats", id, applied, live)
		}
		if want := min(capacity, demand); applied+dead != want {
			fail("pool %s: %d requests for %d seats, want %d applied, got %d (and %d dead-lettered)",
				id, demand, capacity, want, applied, dead)
		}
	}
	if err := prows.Err(); err != nil {
		return o, err
	}
	if seen != len(exp.Demand) {
		fail("%d of the load's %d pools exist", seen, len(exp.Demand))
	}

	var dupHolders, seats, named, distinctNamed, claimed, immediate, pending, invitations int
	if err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM (SELECT 1 FROM seats WHERE status IN ('pending', 'claimed')
				GROUP BY coalesce(subscription_id, order_id), holder HAVING count(*) > 1) d),
			(SELECT count(*) FROM seats),
			(SELECT count(*) FROM requests r JOIN seats s ON s.id::text = r.result #>> '{seat,id}'
				WHERE r.op = 'assign' AND r.status = 'succeeded'),
			(SELECT count(DISTINCT r.result #>> '{seat,id}') FROM requests r WHERE r.op = 'assign' AND r.status = 'succeeded'),
			(SELECT count(*) FROM seats WHERE status = 'claimed'),
			(SELECT count(*) FROM requests WHERE op = 'assign' AND status = 'succeeded'
				AND (payload #>> '{assign,immediate_claim}')::boolean IS TRUE),
			(SELECT count(*) FROM seats WHERE status = 'pending'),
			(SELECT count(*) FROM invitations)`).
		Scan(&dupHolders, &seats, &named, &distinctNamed, &claimed, &immediate, &pending, &invitations); err != nil {
		return o, err
	}
	if dupHolders != 0 {
		fail("%d holders have more than one live seat in a pool", dupHolders)
	}
	if seats != o.Applied || named != o.Applied || distinctNamed != o.Applied {
		fail("duplicate or missing seats: %d seats for %d applied requests, which name %d existing seats (%d distinct)",
			seats, o.Applied, named, distinctNamed)
	}
	if claimed != immediate {
		fail("%d claimed seats, but %d immediate claims applied", claimed, immediate)
	}
	if invitations != pending {
		fail("%d invitations for %d pending seats", invitations, pending)
	}
	return o, errors.Join(problems...)
}
