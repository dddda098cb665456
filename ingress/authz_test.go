package ingress_test

import (
	"context"
	"testing"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage"
)

// TestScopesAndRoles: every portal endpoint refuses a token without the
// scope or role it needs (403), and a missing token (401), before looking
// at anything else.
func TestScopesAndRoles(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "scoped@example.com")
	id := seat["id"].(string)
	async := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "s2@example.com"},
		"Prefer", "respond-async")
	batch := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": []map[string]any{
		{"subscription_id": ten.SubscriptionID, "email": "s3@example.com"}}})

	readOnly := e.Session(ten.CustomerID, "", storage.ScopeRead)
	noScope := e.Session(ten.CustomerID, "", "customer_portal:other")
	plain := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "plain@example.com", Role: "member"}))
	plainTok := e.Session(ten.CustomerID, plain)
	owner := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "owner@example.com", Role: "owner"}))
	ownerTok := e.Session(ten.CustomerID, owner)

	assignBody := map[string]any{"subscription_id": ten.SubscriptionID, "email": "s4@example.com"}
	writes := []struct {
		method, path string
		body         any
	}{
		{"POST", seatsPath, assignBody},
		{"POST", seatsPath + "/batch", map[string]any{"items": []any{assignBody}}},
		{"POST", seatsPath + "/" + id + "/resend", nil},
		{"DELETE", seatsPath + "/" + id, nil},
	}
	reads := []string{
		seatsPath + "?subscription_id=" + ten.SubscriptionID,
		seatsPath + "/subscriptions",
		async.Header.Get("Location"),
		batch.Header.Get("Location"),
	}
	for _, w := range writes {
		for name, tok := range map[string]string{"read-only": readOnly, "no scope": noScope, "plain member": plainTok} {
			if r := e.Do(w.method, w.path, tok, w.body); r.Status != 403 {
				t.Errorf("%s %s with a %s token: %d %s", w.method, w.path, name, r.Status, r.Body)
			}
		}
		if r := e.Do(w.method, w.path, "", w.body); r.Status != 401 {
			t.Errorf("%s %s without a token: %d", w.method, w.path, r.Status)
		}
	}
	for _, p := range reads {
		if r := e.Do("GET", p, noScope, nil); r.Status != 403 {
			t.Errorf("GET %s without a read scope: %d", p, r.Status)
		}
		if r := e.Do("GET", p, "", nil); r.Status != 401 {
			t.Errorf("GET %s without a token: %d", p, r.Status)
		}
		if r := e.Do("GET", p, readOnly, nil); r.Status != 200 {
			t.Errorf("GET %s with a read token: %d", p, r.Status)
		}
	}
	// Nothing changed: the seat is still pending.
	if got := seatdtest.Must(e.DB.Seat(ctx, id)); got.Status != "pending" {
		t.Errorf("seat is %s after refused writes", got.Status)
	}
	// An owner member may manage seats.
	if r := e.Do("DELETE", seatsPath+"/"+id, ownerTok, nil); r.Status != 200 {
		t.Errorf("owner revoke: %d %s", r.Status, r.Body)
	}
}
