package storage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// TestOrgCallerReachesItsOrganizationOnly: an organization's requests act
// on the pools and seats of every customer of the organization and on
// nothing of another organization (not found, before any other check),
// the same on the set-based and the serial path, and are recorded in the
// organization's ledger key space.
func TestOrgCallerReachesItsOrganizationOnly(t *testing.T) {
	t.Parallel()
	w := newBatchWorld()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var reqs []events.Request
	assign := func(org string, a events.SeatAssign) {
		reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, OrganizationID: org, Assign: &a, SubmittedAt: t0})
	}
	revoke := func(org, seat string) {
		reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpRevoke, OrganizationID: org, SeatID: seat, SubmittedAt: t0})
	}
	assign(w.orgA, events.SeatAssign{SubscriptionID: w.s1, Email: "alice@a.test"})  // already assigned
	assign(w.orgA, events.SeatAssign{SubscriptionID: w.foreign, Email: "x@a.test"}) // ok: another customer's pool, same organization
	assign(w.orgA, events.SeatAssign{SubscriptionID: w.sb, Email: "y@b.test"})      // not found: organization B's
	assign(w.orgA, events.SeatAssign{OrderID: w.o2, CustomerID: w.bob})             // ok
	assign(w.orgA, events.SeatAssign{OrderID: w.o1, Email: "x@a.test"})             // order not paid
	assign(w.orgA, events.SeatAssign{SubscriptionID: w.sc, Email: "x@c.test"})      // not found, though C's seat pricing is off
	revoke(w.orgB, w.aliceSeat)                                                     // not found: organization A's seat
	assign(w.orgB, events.SeatAssign{SubscriptionID: w.s1, Email: "z@a.test"})      // not found
	revoke(w.orgA, w.aliceSeat)                                                     // ok
	assign(w.orgA, events.SeatAssign{SubscriptionID: w.s1, Email: "alice@a.test"})  // ok: the revoke freed the seat
	assign(w.orgB, events.SeatAssign{SubscriptionID: w.sb, Email: "m1@b.test"})     // ok, organization B's own (member model)
	assign(w.orgC, events.SeatAssign{SubscriptionID: w.sc, Email: "x@c.test"})      // seat pricing disabled
	wantCodes := []events.Code{"already_assigned", "ok", "not_found", "ok", "order_not_paid", "not_found", "not_found", "not_found",
		"ok", "ok", "ok", "seat_pricing_disabled"}

	st := storage.Settings{Keys: testKeys(t)}
	set, serial := openDB(t), openDB(t)
	w.build(t, set)
	w.build(t, serial)
	got, err := set.Apply(t.Context(), st, reqs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := serial.ApplySerial(t.Context(), st, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		g, s := describe(t, set, got[i]), describe(t, serial, want[i])
		if g != s {
			t.Errorf("%d (%s): set-based %s\n   serial %s", i, reqs[i].Op, g, s)
		}
		if got[i].Code != wantCodes[i] {
			t.Errorf("%d: %s %q, want %s", i, got[i].Code, got[i].Detail, wantCodes[i])
		}
	}
	for _, i := range []int{2, 7} {
		if got[i].Detail != "Subscription not found" {
			t.Errorf("%d: %q, want Polar's message", i, got[i].Detail)
		}
	}
	if got[6].Detail != "Seat not found" {
		t.Errorf("revoke of another organization's seat: %q", got[6].Detail)
	}
	g, s := dbState(t, set), dbState(t, serial)
	if strings.Join(g, "\n") != strings.Join(s, "\n") {
		t.Errorf("database after set-based apply differs from serial:\nset-based:\n%s\nserial:\n%s", strings.Join(g, "\n"), strings.Join(s, "\n"))
	}
	// Nothing of organization A's changed for organization B's revoke: the
	// seat was revoked once, by A (version 2 → 3).
	var status string
	var version int
	if err := set.Pool.QueryRow(t.Context(), `SELECT status, version FROM seats WHERE id = $1`, w.aliceSeat).Scan(&status, &version); err != nil {
		t.Fatal(err)
	}
	if status != "revoked" || version != 3 {
		t.Errorf("alice's seat is %s at version %d", status, version)
	}
	for i, r := range reqs {
		var caller string
		if err := set.Pool.QueryRow(t.Context(), `SELECT caller FROM requests WHERE id = $1`, r.ID).Scan(&caller); err != nil {
			t.Fatal(err)
		}
		if caller != "org:"+r.OrganizationID {
			t.Errorf("%d: ledger caller %q", i, caller)
		}
	}
	// Reads are scoped the same way.
	if _, err := set.ListSeats(t.Context(), storage.Owner{OrganizationID: w.orgA}, w.foreign, ""); err != nil {
		t.Errorf("organization A lists another of its customers' pools: %v", err)
	}
	if _, err := set.ListSeats(t.Context(), storage.Owner{OrganizationID: w.orgB}, w.s1, ""); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("organization B lists A's pool: %v", err)
	}
	if _, err := set.Request(t.Context(), reqs[1].ID, storage.Owner{OrganizationID: w.orgB}.Ledger()); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("organization B reads A's request: %v", err)
	}
	if _, err := set.Request(t.Context(), reqs[1].ID, storage.Owner{CustomerID: w.other}.Ledger()); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("the pool's customer reads its organization's request: %v", err)
	}
}
