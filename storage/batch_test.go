package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

func openDB(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), storagetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func mustExec(t *testing.T, db *storage.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// batchWorld is one set of fixed ids, so the same fixture and the same
// requests can be built in two databases.
type batchWorld struct {
	orgA, orgB, orgC                          string
	buyerA, buyerB, buyerC, other, alice, bob string
	s1, s2, o1, o2, foreign, sb, sc, k1, k2   string
	aliceSeat, member1, owner                 string
	prodA, prodB, prodC                       string
	sb2, s3, memberA                          string
}

func newBatchWorld() batchWorld {
	n := uuid.NewString
	return batchWorld{orgA: n(), orgB: n(), orgC: n(), buyerA: n(), buyerB: n(), buyerC: n(), other: n(), alice: n(), bob: n(),
		s1: n(), s2: n(), o1: n(), o2: n(), foreign: n(), sb: n(), sc: n(), k1: n(), k2: n(), aliceSeat: n(), member1: n(), owner: n(),
		prodA: n(), prodB: n(), prodC: n(), sb2: n(), s3: n(), memberA: n()}
}

func (w batchWorld) build(t *testing.T, db *storage.DB) {
	t.Helper()
	x := func(sql string, args ...any) { mustExec(t, db, sql, args...) }
	x(`INSERT INTO organizations (id, name, slug, seat_based_pricing, member_model) VALUES
		($1, 'A', 'a', true, false), ($2, 'B', 'b', true, true), ($3, 'C', 'c', false, false)`, w.orgA, w.orgB, w.orgC)
	x(`INSERT INTO customers (id, organization_id, email, external_id) VALUES
		($1, $6, 'buyer@a.test', NULL), ($2, $7, 'buyer@b.test', NULL), ($3, $8, 'buyer@c.test', NULL),
		($4, $6, 'other@a.test', NULL), ($5, $6, 'alice@a.test', 'ext-alice')`,
		w.buyerA, w.buyerB, w.buyerC, w.other, w.alice, w.orgA, w.orgB, w.orgC)
	x(`INSERT INTO customers (id, organization_id, email) VALUES ($1, $2, 'Bob@a.test')`, w.bob, w.orgA)
	x(`INSERT INTO products (id, organization_id, name, recurring_interval, recurring_interval_count) VALUES
		($1, $4, 'P', 'month', 1), ($2, $5, 'P', 'month', 1), ($3, $6, 'P', 'month', 1)`, w.prodA, w.prodB, w.prodC, w.orgA, w.orgB, w.orgC)
	x(`INSERT INTO subscriptions (id, customer_id, product_id, seats, seats_used, status) VALUES
		($1, $5, $8, 3, 1, 'active'), ($2, $5, $8, 1, 0, 'active'), ($3, $6, $8, 5, 0, 'active'),
		($4, $7, $9, 3, 0, 'active')`, w.s1, w.s2, w.foreign, w.sb, w.buyerA, w.other, w.buyerB, w.prodA, w.prodB)
	x(`INSERT INTO subscriptions (id, customer_id, product_id, seats, status) VALUES ($1, $2, $3, 5, 'active')`, w.sc, w.buyerC, w.prodC)
	x(`INSERT INTO subscriptions (id, customer_id, product_id, seats, status) VALUES ($1, $3, $5, 10, 'active'), ($2, $4, $6, 10, 'active')`,
		w.sb2, w.s3, w.buyerB, w.buyerA, w.prodB, w.prodA)
	x(`INSERT INTO orders (id, customer_id, product_id, seats, status) VALUES
		($1, $3, $4, 2, 'pending'), ($2, $3, $4, 2, 'paid')`, w.o1, w.o2, w.buyerA, w.prodA)
	x(`INSERT INTO checkouts (id, customer_id, subscription_id, order_id) VALUES ($1, $3, $4, NULL), ($2, $3, NULL, $5)`,
		w.k1, w.k2, w.buyerA, w.s1, w.o2)
	x(`INSERT INTO seats (id, subscription_id, status, customer_id, holder, claimed_at, version)
		VALUES ($1, $2, 'claimed', $3, $4, now(), 2)`, w.aliceSeat, w.s1, w.alice, "customer:"+w.alice)
	x(`INSERT INTO members (id, customer_id, email, role, name, external_id) VALUES
		($1, $3, 'm1@b.test', 'member', 'Member One', 'ext-m1'), ($2, $3, 'owner@b.test', 'owner', NULL, NULL)`,
		w.member1, w.owner, w.buyerB)
	// A member of the customer-model organization's buyer: member ids take
	// the member path there too.
	x(`INSERT INTO members (id, customer_id, email, role, external_id) VALUES ($1, $2, 'ma@a.test', 'member', 'ext-ma')`,
		w.memberA, w.buyerA)
}

// requests is a batch that touches every check, in an order where each
// outcome depends on the ones before it.
func (w batchWorld) requests() []events.Request {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var out []events.Request
	add := func(caller string, a events.SeatAssign) *events.Request {
		out = append(out, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: caller, Assign: &a, SubmittedAt: t0})
		return &out[len(out)-1]
	}
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s1, Email: "alice@a.test"})                                     // already assigned (in the database)
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s1, Email: "NEW@a.test", Metadata: json.RawMessage(`{"k":1}`)}) // ok, new customer
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s1, Email: "new@a.test"})                                       // already assigned (in this batch)
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s1, CustomerID: w.bob})                                         // ok: S1 full
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s1, Email: "carol@a.test"})                                     // no seats
	out = append(out, events.Request{ID: uuid.NewString(), Op: events.OpRevoke, CustomerID: w.buyerA, SeatID: w.aliceSeat, SubmittedAt: t0})
	add(w.buyerA, events.SeatAssign{CheckoutID: w.k1, Email: "carol@a.test", ImmediateClaim: true}) // ok: the revoke freed a seat
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s2, ExternalCustomerID: "ext-alice"})         // ok
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s2, Email: "dave@a.test"})                    // no seats
	add(w.buyerA, events.SeatAssign{OrderID: w.o1, Email: "x@a.test"})                              // order not paid
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.foreign, Email: "x@a.test"})                  // not found
	add(w.buyerA, events.SeatAssign{CheckoutID: w.k2, Email: "z@a.test", ImmediateClaim: true})     // ok
	add(w.buyerA, events.SeatAssign{OrderID: w.o2, CustomerID: uuid.NewString()})                   // customer not found
	add(w.buyerA, events.SeatAssign{OrderID: w.o2, ExternalCustomerID: "nope"})                     // customer not found
	add(w.buyerA, events.SeatAssign{CheckoutID: uuid.NewString(), Email: "x@a.test"})               // checkout not found
	add(w.buyerC, events.SeatAssign{SubscriptionID: w.sc, Email: "x@c.test"})                       // seat pricing disabled
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb, Email: "m1@B.test"})                      // ok, existing member
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb, Email: "M1@b.test"})                      // already assigned (member model)
	r := add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb, Email: "newm@b.test"})               // ok, new member, invited by the owner
	r.MemberID = w.owner
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb, Email: "other@b.test", ImmediateClaim: true}) // ok: SB full
	// Members named by id and external id (Polar's _resolve_member).
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, MemberID: w.member1})                                  // ok: by id
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, MemberID: w.member1})                                  // already assigned (m1@b.test)
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, MemberID: uuid.NewString()})                           // member not found
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, MemberID: w.memberA})                                  // member not found: another customer's
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-m1", Email: "else@b.test"})     // email mismatch
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-new"})                          // member not found
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-owner", Email: "Owner@b.test"}) // ok: the owner takes ext-owner
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-owner"})                        // already assigned: linked just now
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-fresh", Email: "fresh@b.test"}) // ok: new member with ext-fresh
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, ExternalMemberID: "ext-other", Email: "fresh@b.test"}) // email mismatch: fresh has ext-fresh
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, CustomerID: w.alice})                                  // invalid: not a customer of B
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb2, Email: "M1@b.test"})                                   // already assigned: by id above
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s3, MemberID: w.memberA})                                   // ok: member path without the member model
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s3, ExternalMemberID: "ext-ma"})                            // already assigned (ma@a.test)
	add(w.buyerA, events.SeatAssign{SubscriptionID: w.s3, Email: "ma@a.test"})                                    // ok: the customer path keys by customer
	add(w.buyerB, events.SeatAssign{SubscriptionID: w.sb, Email: "late@b.test"})                                  // no seats
	out = append(out, out[1])                                                                                     // the same request twice: one seat
	return out
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// names replaces the customer and member ids generated by one run with
// their emails, so two runs can be compared.
func names(t *testing.T, db *storage.DB, s string) string {
	return uuidRE.ReplaceAllStringFunc(s, func(id string) string {
		var email string
		if db.Pool.QueryRow(t.Context(), `SELECT email FROM customers WHERE id = $1 UNION ALL SELECT email FROM members WHERE id = $1`, id).Scan(&email) == nil {
			return "<" + strings.ToLower(email) + ">"
		}
		return id
	})
}

func describe(t *testing.T, db *storage.DB, res events.Result) string {
	s := fmt.Sprintf("%s %q", res.Code, names(t, db, res.Detail))
	if st := res.Seat; st != nil {
		email := ""
		if st.Email != nil {
			email = *st.Email
		}
		cust := ""
		if st.CustomerID != nil {
			cust = names(t, db, *st.CustomerID)
		}
		s += fmt.Sprintf(" seat{%s sub=%v order=%v cust=%s email=%q custEmail=%q claimed=%v expires=%v meta=%s member=%v}",
			st.Status, st.SubscriptionID != nil, st.OrderID != nil, cust, email, deref(st.CustomerEmail),
			st.ClaimedAt != nil, st.InvitationTokenExpiresAt != nil, compactJSON(st.SeatMetadata), st.MemberID != nil)
		if m := st.Member; m != nil {
			s += fmt.Sprintf(" member{%s same-id=%v cust=%s email=%q name=%q ext=%q role=%s modified=%v}",
				names(t, db, m.ID), st.MemberID != nil && *st.MemberID == m.ID, names(t, db, m.CustomerID), m.Email,
				deref(m.Name), deref(m.ExternalID), m.Role, m.ModifiedAt != nil)
		}
	}
	return s
}

// compactJSON ignores the formatting jsonb gives a replayed outcome.
func compactJSON(m json.RawMessage) string {
	var b bytes.Buffer
	if len(m) == 0 || json.Compact(&b, m) != nil || b.String() == "null" {
		return ""
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// dbState is what a user can see in the database after a batch.
func dbState(t *testing.T, db *storage.DB) []string {
	t.Helper()
	var out []string
	q := func(sql string) {
		rows, err := db.Pool.Query(t.Context(), sql)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, names(t, db, fmt.Sprint(vals...)))
		}
	}
	q(`SELECT 'pool', id::text, seats_used FROM subscriptions UNION ALL SELECT 'pool', id::text, seats_used FROM orders`)
	q(`SELECT 'seat', coalesce(subscription_id, order_id)::text, status, coalesce(customer_id::text, ''), coalesce(member_id::text, ''),
		coalesce(email, ''), coalesce(inviter_email, ''), coalesce(seat_metadata::text, ''), version,
		(invitation_token_hash IS NOT NULL) FROM seats`)
	q(`SELECT 'customer', organization_id::text, email FROM customers`)
	q(`SELECT 'member', customer_id::text, email, role, coalesce(name, ''), coalesce(external_id, ''), modified_at IS NOT NULL FROM members`)
	q(`SELECT 'invitation', delivery_state FROM invitations`)
	q(`SELECT 'outbox', subject, payload->>'type' FROM outbox`)
	q(`SELECT 'request', status, coalesce(code, ''), deliveries FROM requests`)
	sort.Strings(out)
	return out
}

// TestApplySetMatchesSerial is the set-based apply's contract: a batch with
// every kind of refusal, duplicates against the database and inside the
// batch, new customers and members, a revoke between assigns and the same
// request twice gets, request by request, the outcome the serial path
// gives, and leaves the same rows.
func TestApplySetMatchesSerial(t *testing.T) {
	t.Parallel()
	w := newBatchWorld()
	reqs := w.requests()
	st := storage.Settings{Keys: testKeys(t)}
	set, serial := openDB(t), openDB(t)
	w.build(t, set)
	w.build(t, serial)
	// One request already completed, as after a crash between commit and ack.
	done := reqs[len(reqs)-2]
	for _, db := range []*storage.DB{set, serial} {
		res, _ := json.Marshal(events.Result{RequestID: done.ID, Code: events.CodeNoAvailableSeats, Detail: "earlier"})
		mustExec(t, db, `INSERT INTO requests (id, op, caller, payload, status, code, result) VALUES ($1, 'assign', $2, '{}', 'failed', 'no_available_seats', $3)`,
			done.ID, done.CustomerID, res)
	}
	got, err := set.Apply(t.Context(), st, reqs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := serial.ApplySerial(t.Context(), st, reqs)
	if err != nil {
		t.Fatal(err)
	}
	wantCodes := []events.Code{"already_assigned", "ok", "already_assigned", "ok", "no_available_seats", "ok", "ok", "ok",
		"no_available_seats", "order_not_paid", "not_found", "ok", "customer_not_found", "customer_not_found", "not_found",
		"seat_pricing_disabled", "ok", "already_assigned", "ok", "ok",
		"ok", "already_assigned", "member_not_found", "member_not_found", "member_email_mismatch", "member_not_found", "ok",
		"already_assigned", "ok", "member_email_mismatch", "invalid_seat_assignment", "already_assigned", "ok", "already_assigned", "ok",
		"no_available_seats", "ok"}
	for i := range reqs {
		if got[i].RequestID != reqs[i].ID {
			t.Errorf("%d: result for %s, want %s", i, got[i].RequestID, reqs[i].ID)
		}
		g, s := describe(t, set, got[i]), describe(t, serial, want[i])
		if g != s {
			t.Errorf("%d (%s): set-based %s\n   serial %s", i, reqs[i].Op, g, s)
		}
		if i < len(wantCodes) && got[i].Code != wantCodes[i] {
			t.Errorf("%d: code %s, want %s (%s)", i, got[i].Code, wantCodes[i], got[i].Detail)
		}
	}
	// Polar's messages, naming what was not found or is taken.
	for i, want := range map[int]string{
		0:  "Seat already assigned to customer alice@a.test",
		4:  "No available seats for " + w.s1,
		12: "Customer not found: " + reqs[12].Assign.CustomerID,
		13: "Customer not found: nope",
		14: "No subscription or order found for this checkout",
		22: "Member not found: " + reqs[22].Assign.MemberID,
		24: "Member with external_member_id 'ext-m1' exists but has a different email than 'else@b.test'",
		25: "Member not found: ext-new",
		27: "Seat already assigned to customer owner@b.test",
		30: "Customer not found for the provided customer_id or external_customer_id.",
	} {
		if got[i].Detail != want {
			t.Errorf("%d: detail %q, want %q", i, got[i].Detail, want)
		}
	}
	// The seats carry their members: the owner linked to ext-owner, a new
	// member created with ext-fresh, a member of a customer-model buyer.
	for i, want := range map[int]events.Member{
		20: {ID: w.member1, CustomerID: w.buyerB, Email: "m1@b.test", Name: ptr("Member One"), ExternalID: ptr("ext-m1"), Role: "member"},
		26: {ID: w.owner, CustomerID: w.buyerB, Email: "owner@b.test", ExternalID: ptr("ext-owner"), Role: "owner"},
		28: {CustomerID: w.buyerB, Email: "fresh@b.test", ExternalID: ptr("ext-fresh"), Role: "member"},
		32: {ID: w.memberA, CustomerID: w.buyerA, Email: "ma@a.test", ExternalID: ptr("ext-ma"), Role: "member"},
	} {
		m := got[i].Seat.Member
		if m == nil || (want.ID != "" && m.ID != want.ID) || m.CustomerID != want.CustomerID || m.Email != want.Email ||
			deref(m.Name) != deref(want.Name) || deref(m.ExternalID) != deref(want.ExternalID) || m.Role != want.Role ||
			*got[i].Seat.MemberID != m.ID || (m.ModifiedAt != nil) != (i == 26) {
			t.Errorf("%d: member %+v, want %+v", i, m, want)
		}
	}
	// Each seat as answered is the seat as read back, member and all, on
	// both paths.
	for db, results := range map[*storage.DB][]events.Result{set: got, serial: want} {
		for i, res := range results {
			if res.Seat == nil {
				continue
			}
			back, err := db.Seat(t.Context(), res.Seat.ID)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(res.Seat)
			b, _ := json.Marshal(back)
			if !bytes.Equal(a, b) {
				t.Errorf("%d: seat answered\n%s\nread back\n%s", i, a, b)
			}
		}
	}
	if got[1].Seat == nil || got[len(got)-1].Seat == nil || got[1].Seat.ID != got[len(got)-1].Seat.ID {
		t.Error("the same request twice in a batch did not get the same seat")
	}
	g, s := dbState(t, set), dbState(t, serial)
	for i := 0; i < max(len(g), len(s)); i++ {
		if i >= len(g) || i >= len(s) || g[i] != s[i] {
			t.Errorf("database after set-based apply differs from serial:\nset-based:\n%s\nserial:\n%s", strings.Join(g[min(i, len(g)):], "\n"), strings.Join(s[min(i, len(s)):], "\n"))
			break
		}
	}

	// Applying the batch again changes nothing and replays every outcome.
	again, err := set.Apply(t.Context(), st, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if a, b := describe(t, set, again[i]), describe(t, set, got[i]); a != b {
			t.Errorf("%d replayed as %s, first %s", i, a, b)
		}
	}
	after := dbState(t, set)
	for i := range after {
		if strings.HasPrefix(after[i], "request") {
			continue // deliveries count up
		}
		if i >= len(g) || after[i] != g[i] {
			t.Errorf("replay changed the database: %s", after[i])
			break
		}
	}
}

func testKeys(t *testing.T) secret.Keys {
	k, err := secret.NewKeys([]byte("seatd-test-secret-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestApplySetRacingWorkers: several workers apply overlapping batches to
// a few small pools at once (set-based, falling back to serial like the
// worker), with refusals of every kind mixed into each batch. No pool ends
// over capacity, its counter equals its live seats, no occupant holds two
// seats of a pool, and every request has exactly one outcome.
func TestApplySetRacingWorkers(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := t.Context()
	st := storage.Settings{Keys: testKeys(t)}
	org, err := db.CreateOrganization(ctx, "Race", true, false)
	if err != nil {
		t.Fatal(err)
	}
	buyer, err := db.CreateCustomer(ctx, org, "buyer@race.test", "")
	if err != nil {
		t.Fatal(err)
	}
	const pools, seats = 4, 7
	var subs []string
	for range pools {
		subs = append(subs, storagetest.Pool(t, db, "subscription", buyer, "P", seats, ""))
	}
	unpaid := storagetest.Pool(t, db, "order", buyer, "P", 5, "pending")
	// 400 requests: 12 distinct emails per pool (each asked for several
	// times, in varying case), plus unpaid orders and unknown customers.
	var reqs []events.Request
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		a := events.SeatAssign{SubscriptionID: subs[rng.IntN(pools)], Email: fmt.Sprintf("user%d@race.test", rng.IntN(12)),
			ImmediateClaim: i%3 == 0}
		switch i % 10 {
		case 7:
			a = events.SeatAssign{OrderID: unpaid, Email: "x@race.test"}
		case 8:
			a = events.SeatAssign{SubscriptionID: a.SubscriptionID, CustomerID: uuid.NewString()}
		case 9:
			a.Email = strings.ToUpper(a.Email)
		}
		reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: buyer, Assign: &a, SubmittedAt: time.Now().UTC()})
	}
	// Every request goes to two workers, as a redelivery would.
	work := make(chan []events.Request, 64)
	for _, pass := range [][]events.Request{reqs, shuffled(rng, reqs)} {
		for i := 0; i < len(pass); i += 25 {
			batch := append([]events.Request(nil), pass[i:min(i+25, len(pass))]...)
			sort.SliceStable(batch, func(i, j int) bool { return batch[i].LockKey() < batch[j].LockKey() })
			work <- batch
		}
	}
	close(work)
	outcomes := sync.Map{}
	var wg sync.WaitGroup
	var fallbacks, retries int64
	var mu sync.Mutex
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work {
				res, err := applyLikeWorker(ctx, db, st, batch, &mu, &fallbacks, &retries)
				if err != nil {
					t.Error(err)
					return
				}
				for i, r := range res {
					if prev, loaded := outcomes.LoadOrStore(batch[i].ID, r); loaded {
						p := prev.(events.Result)
						if p.Code != r.Code || (p.Seat == nil) != (r.Seat == nil) || (p.Seat != nil && p.Seat.ID != r.Seat.ID) {
							t.Errorf("request %s: two outcomes %s and %s", batch[i].ID, p.Code, r.Code)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("fallbacks to serial %d, transient retries %d", fallbacks, retries)

	var over, mismatched, doubled, queued, ok int
	q := func(sql string, dst *int) {
		if err := db.Pool.QueryRow(ctx, sql).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	q(`SELECT count(*) FROM subscriptions WHERE seats_used > seats`, &over)
	q(`SELECT count(*) FROM subscriptions p WHERE seats_used <> (SELECT count(*) FROM seats s WHERE s.subscription_id = p.id AND status <> 'revoked')`, &mismatched)
	q(`SELECT count(*) FROM (SELECT 1 FROM seats WHERE status <> 'revoked' GROUP BY subscription_id, holder HAVING count(*) > 1) d`, &doubled)
	q(`SELECT count(*) FROM requests WHERE status = 'queued'`, &queued)
	q(`SELECT count(*) FROM requests WHERE code = 'ok'`, &ok)
	if over+mismatched+doubled+queued > 0 {
		t.Errorf("over capacity %d, counter ≠ live seats %d, doubled holders %d, still queued %d", over, mismatched, doubled, queued)
	}
	var seatsTotal, eventsTotal int
	q(`SELECT count(*) FROM seats`, &seatsTotal)
	q(`SELECT count(*) FROM outbox WHERE subject LIKE 'seatd.events.%'`, &eventsTotal)
	if seatsTotal != ok || eventsTotal != ok {
		t.Errorf("%d seats and %d seat events for %d successful requests", seatsTotal, eventsTotal, ok)
	}
	// Each pool has 12 candidates for 7 seats, so every pool fills up.
	if ok != pools*seats {
		t.Errorf("%d seats granted, want %d", ok, pools*seats)
	}
	var codes []string
	outcomes.Range(func(_, v any) bool { codes = append(codes, string(v.(events.Result).Code)); return true })
	for _, want := range []string{"ok", "already_assigned", "no_available_seats", "order_not_paid", "not_found"} {
		if !strings.Contains(strings.Join(codes, ","), want) {
			t.Errorf("no %s outcome among %d", want, len(codes))
		}
	}
}

// applyLikeWorker applies a batch as the worker does: set-based, then one
// by one on a non-transient failure; transient failures (deadlocks) retry.
func applyLikeWorker(ctx context.Context, db *storage.DB, st storage.Settings, batch []events.Request, mu *sync.Mutex, fallbacks, retries *int64) ([]events.Result, error) {
	for attempt := 0; ; attempt++ {
		res, err := db.Apply(ctx, st, batch)
		if err == nil {
			return res, nil
		}
		if attempt > 20 {
			return nil, err
		}
		mu.Lock()
		if storage.IsTransient(err) {
			*retries++
			mu.Unlock()
			continue
		}
		*fallbacks++
		mu.Unlock()
		out := make([]events.Result, len(batch))
		for i, r := range batch {
			for {
				one, err := db.ApplySerial(ctx, st, []events.Request{r})
				if err == nil {
					out[i] = one[0]
					break
				}
				if !storage.IsTransient(err) {
					return nil, err
				}
			}
		}
		return out, nil
	}
}

func shuffled(rng *rand.Rand, reqs []events.Request) []events.Request {
	out := append([]events.Request(nil), reqs...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestApplySetConcurrentNewCustomer: while a batch decides, another
// transaction creates the customer the batch meant to create. The batch
// fails as a whole rather than guess (nothing of it stays), and the serial
// retry assigns the seat to the customer that won.
func TestApplySetConcurrentNewCustomer(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := t.Context()
	st := storage.Settings{Keys: testKeys(t)}
	org, _ := db.CreateOrganization(ctx, "Race", true, false)
	buyer, _ := db.CreateCustomer(ctx, org, "buyer@race.test", "")
	sub := storagetest.Pool(t, db, "subscription", buyer, "P", 3, "")
	other, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback(ctx) }() // a no-op once committed
	winner := uuid.NewString()
	if _, err := other.Exec(ctx, `INSERT INTO customers (id, organization_id, email) VALUES ($1, $2, 'Late@race.test')`, winner, org); err != nil {
		t.Fatal(err)
	}
	req := events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: buyer, SubmittedAt: time.Now().UTC(),
		Assign: &events.SeatAssign{SubscriptionID: sub, Email: "late@race.test"}}
	errc := make(chan error, 1)
	go func() {
		_, err := db.Apply(ctx, st, []events.Request{req})
		errc <- err
	}()
	// The batch's insert waits for the other transaction's row.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never waited for the concurrent customer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-errc
	if err == nil {
		t.Fatal("the batch succeeded with a customer id that lost the race")
	}
	if storage.IsTransient(err) {
		t.Fatalf("conflict reported as transient (would be retried set-based forever): %v", err)
	}
	var seats, status int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM seats`).Scan(&seats)
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&status)
	if seats != 0 || status != 0 {
		t.Fatalf("the failed batch left %d seats and %d ledger rows", seats, status)
	}
	res, err := db.ApplySerial(ctx, st, []events.Request{req})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].OK() || *res[0].Seat.CustomerID != winner {
		t.Fatalf("serial retry: %s %s, seat for %v, want customer %s", res[0].Code, res[0].Detail, res[0].Seat, winner)
	}
}
