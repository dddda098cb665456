package ingress_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

const orgPath = "/v1/customer-seats"

// orgFixture is two organizations. A has two customers who bought seats
// (a subscription and a paid order) and a read-write organization access
// token; B has the same, plus a pending seat, a queued request and a batch
// of its own, made through its own token.
type orgFixture struct {
	e                *seatdtest.Env
	a, b             seatdtest.Tenant
	aOrder, bOrder   string // paid orders of a second customer of each organization
	aToken, bToken   string
	bSeat            string // a pending seat in B's subscription
	bRequest, bBatch string // Locations of B's async request and batch
}

func orgSetup(t *testing.T, opts seatdtest.Options) *orgFixture {
	t.Helper()
	e := seatdtest.New(t, opts)
	f := &orgFixture{e: e, a: e.Tenant(seatdtest.TenantOptions{}), b: e.Tenant(seatdtest.TenantOptions{})}
	ctx := context.Background()
	for _, x := range []struct {
		ten   seatdtest.Tenant
		order *string
		token *string
	}{{f.a, &f.aOrder, &f.aToken}, {f.b, &f.bOrder, &f.bToken}} {
		second := seatdtest.Must(e.DB.CreateCustomer(ctx, x.ten.OrgID, "second-"+x.ten.OrgID[:8]+"@example.com", ""))
		*x.order = e.Pool("order", second, "Desk", 3, "paid")
		*x.token = e.OrgToken(x.ten.OrgID)
	}
	r := e.Do("POST", orgPath, f.bToken, map[string]any{"subscription_id": f.b.SubscriptionID, "email": "b-seat@example.com"})
	if r.Status != 200 {
		t.Fatalf("B's seat: %d %s", r.Status, r.Body)
	}
	f.bSeat = r.JSON(t)["id"].(string)
	r = e.Do("POST", orgPath, f.bToken, map[string]any{"order_id": f.bOrder, "email": "b-async@example.com"}, "Prefer", "respond-async")
	if r.Status != 202 {
		t.Fatalf("B's async request: %d %s", r.Status, r.Body)
	}
	f.bRequest = r.Header.Get("Location")
	r = e.Do("POST", orgPath+"/batch", f.bToken, map[string]any{"items": []any{map[string]any{"order_id": f.bOrder, "email": "b-batch@example.com"}}})
	if r.Status != 202 {
		t.Fatalf("B's batch: %d %s", r.Status, r.Body)
	}
	f.bBatch = r.Header.Get("Location")
	poll(t, e, f.bToken, f.bRequest)
	poll(t, e, f.bToken, f.bBatch)
	return f
}

func seatKeys(t *testing.T, r seatdtest.Response) map[string]any {
	t.Helper()
	seat := r.JSON(t)
	for _, k := range []string{"created_at", "modified_at", "id", "subscription_id", "order_id", "status", "customer_id",
		"member_id", "email", "customer_email", "invitation_token_expires_at", "claimed_at", "revoked_at", "seat_metadata"} {
		if _, ok := seat[k]; !ok {
			t.Errorf("CustomerSeat lacks %q: %s", k, r.Body)
		}
	}
	return seat
}

// TestOrgAPIRoutes: every route of the organization API answers as Polar's
// customer seat API, on any pool of the token's organization (not only one
// customer's), through the same pipeline as the portal: the seat the
// organization assigns is the one the customer lists.
func TestOrgAPIRoutes(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{})
	e, ctx := f.e, context.Background()

	r := e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "dev@example.com",
		"metadata": map[string]any{"team": "red"}})
	if r.Status != 200 {
		t.Fatalf("assign by subscription: %d %s", r.Status, r.Body)
	}
	pending := seatKeys(t, r)
	if pending["status"] != "pending" || pending["subscription_id"] != f.a.SubscriptionID || pending["customer_email"] != "dev@example.com" ||
		pending["invitation_token_expires_at"] == nil || pending["seat_metadata"].(map[string]any)["team"] != "red" {
		t.Errorf("assigned %s", r.Body)
	}
	id := pending["id"].(string)
	var caller string
	if err := e.DB.Pool.QueryRow(ctx, `SELECT caller FROM requests WHERE result->'seat'->>'id' = $1`, id).Scan(&caller); err != nil {
		t.Fatal(err)
	}
	if caller != "org:"+f.a.OrgID {
		t.Errorf("the assign is recorded for %q, want the organization", caller)
	}

	r = e.Do("POST", orgPath, f.aToken, map[string]any{"order_id": f.aOrder, "email": "ops@example.com", "immediate_claim": true})
	if r.Status != 200 {
		t.Fatalf("assign by another customer's order: %d %s", r.Status, r.Body)
	}
	if claimed := seatKeys(t, r); claimed["status"] != "claimed" || claimed["order_id"] != f.aOrder || claimed["claimed_at"] == nil {
		t.Errorf("immediate claim: %s", r.Body)
	}

	r = e.Do("GET", orgPath+"?subscription_id="+f.a.SubscriptionID, f.aToken, nil)
	list := r.JSON(t)
	if r.Status != 200 || list["total_seats"] != 5.0 || list["available_seats"] != 4.0 || len(list["seats"].([]any)) != 1 ||
		list["seats"].([]any)[0].(map[string]any)["id"] != id {
		t.Errorf("list by subscription: %d %s", r.Status, r.Body)
	}
	if r := e.Do("GET", orgPath+"?order_id="+f.aOrder, f.aToken, nil); r.Status != 200 || r.JSON(t)["available_seats"] != 2.0 {
		t.Errorf("list by order: %d %s", r.Status, r.Body)
	}
	// The customer sees the organization's seat in its pool.
	if r := e.Do("GET", seatsPath+"?subscription_id="+f.a.SubscriptionID, f.a.Token, nil); !strings.Contains(string(r.Body), id) {
		t.Errorf("the customer's list lacks the organization's seat: %s", r.Body)
	}

	oldToken := invitationToken(t, e, id)
	r = e.Do("POST", orgPath+"/"+id+"/resend", f.aToken, nil)
	if r.Status != 200 || seatKeys(t, r)["status"] != "pending" {
		t.Fatalf("resend: %d %s", r.Status, r.Body)
	}
	if invitationToken(t, e, id) == oldToken {
		t.Error("resend kept the old invitation link")
	}

	r = e.Do("DELETE", orgPath+"/"+id, f.aToken, nil)
	if r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if revoked := seatKeys(t, r); revoked["status"] != "revoked" || revoked["revoked_at"] == nil || revoked["customer_id"] != nil {
		t.Errorf("revoke: %s", r.Body)
	}
	if r := e.Do("DELETE", orgPath+"/"+id, f.aToken, nil); r.Status != 200 || r.JSON(t)["status"] != "revoked" {
		t.Errorf("revoking again: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", orgPath+"/"+id+"/resend", f.aToken, nil); r.Status != 400 || r.JSON(t)["error"] != "SeatNotPending" {
		t.Errorf("resend of a revoked seat: %d %s", r.Status, r.Body)
	}
	if got := seatdtest.Must(e.DB.ListSeats(ctx, storage.Owner{CustomerID: f.a.CustomerID}, f.a.SubscriptionID, "")); got.AvailableSeats != 5 {
		t.Errorf("%d seats available after the revoke, want 5", got.AvailableSeats)
	}

	// The claim endpoints beside it still take no token.
	r = e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "claimer@example.com"})
	tok := invitationToken(t, e, r.JSON(t)["id"].(string))
	if r := e.Do("GET", claimPath+"/"+tok, "", nil); r.Status != 200 || r.JSON(t)["can_claim"] != true {
		t.Errorf("claim info: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": tok}); r.Status != 200 || r.JSON(t)["customer_session_token"] == nil {
		t.Errorf("claim: %d %s", r.Status, r.Body)
	}
}

// TestOrgAPIAuth: a missing, malformed, unknown, expired or revoked token,
// and a customer session, are 401 on the organization API; an organization
// token is 401 on the customer portal (Polar: a subject the endpoint does
// not allow is anonymous). A token without the scope is 403
// insufficient_scope, Polar's (authlib's) body and challenge, and changes
// nothing.
func TestOrgAPIAuth(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{AuthFailLimit: -1}) // many bad tokens from one address, on purpose
	e, ctx := f.e, context.Background()
	expired := e.OrgToken(f.a.OrgID)
	if _, err := e.DB.Pool.Exec(ctx, `UPDATE org_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1`,
		e.Keys.AccessTokenHash(expired)); err != nil {
		t.Fatal(err)
	}
	revoked := e.OrgToken(f.a.OrgID)
	list := seatdtest.Must(e.DB.OrgTokens(ctx, f.a.OrgID))
	if _, err := e.DB.RevokeOrgToken(ctx, list[len(list)-1].ID); err != nil {
		t.Fatal(err)
	}
	seat := e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "target@example.com"}).JSON(t)["id"].(string)
	seats := e.SeatCount()

	routes := []struct {
		method, path string
		body         any
	}{
		{"GET", orgPath + "?subscription_id=" + f.a.SubscriptionID, nil},
		{"POST", orgPath, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "new@example.com"}},
		{"POST", orgPath + "/batch", map[string]any{"items": []any{map[string]any{"subscription_id": f.a.SubscriptionID, "email": "new@example.com"}}}},
		{"POST", orgPath + "/" + seat + "/resend", nil},
		{"DELETE", orgPath + "/" + seat, nil},
		{"GET", orgPath + "/requests/00000000-0000-4000-8000-000000000000", nil},
		{"GET", orgPath + "/batches/00000000-0000-4000-8000-000000000000", nil},
	}
	for name, tok := range map[string]string{
		"no token": "", "malformed": "polar_oat_nope", "unknown": secret.NewPrefixedToken("polar_oat_"),
		"expired": expired, "revoked": revoked, "customer session": f.a.Token,
	} {
		for _, rt := range routes {
			r := e.Do(rt.method, rt.path, tok, rt.body)
			if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="polar"` || r.JSON(t)["error"] != "Unauthorized" {
				t.Errorf("%s: %s %s: %d %s %v", name, rt.method, rt.path, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
			}
		}
	}
	for _, rt := range []struct{ method, path string }{{"GET", seatsPath + "?subscription_id=" + f.a.SubscriptionID}, {"POST", seatsPath},
		{"DELETE", seatsPath + "/" + seat}} {
		if r := e.Do(rt.method, rt.path, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "p@example.com"}); r.Status != 401 {
			t.Errorf("organization token on the portal: %s %s: %d %s", rt.method, rt.path, r.Status, r.Body)
		}
	}

	readOnly := e.OrgToken(f.a.OrgID, storage.ScopeSeatsRead)
	writeOnly := e.OrgToken(f.a.OrgID, storage.ScopeSeatsWrite)
	async := e.Do("POST", orgPath, writeOnly, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "w@example.com"}, "Prefer", "respond-async")
	batch := e.Do("POST", orgPath+"/batch", writeOnly, map[string]any{"items": []any{map[string]any{"order_id": f.aOrder, "email": "w@example.com"}}})
	if async.Status != 202 || batch.Status != 202 {
		t.Fatalf("write-only token: %d %s, %d %s", async.Status, async.Body, batch.Status, batch.Body)
	}
	seats += 2
	// Both must have been applied before the seats are counted.
	for _, loc := range []string{async.Header.Get("Location"), batch.Header.Get("Location")} {
		if got := poll(t, e, writeOnly, loc); got["status"] == "failed" {
			t.Fatalf("write-only token's request: %v", got)
		}
	}
	insufficient := func(name string, r seatdtest.Response, scope string) {
		t.Helper()
		body := r.JSON(t)
		want := `Bearer realm="polar", scope="` + scope + `", error="insufficient_scope", error_description="The request requires higher privileges than provided by the access token."`
		if r.Status != 403 || body["error"] != "insufficient_scope" || body["error_description"] != "The request requires higher privileges than provided by the access token." ||
			!strings.Contains(body["detail"].(string), scope) || r.Header.Get("WWW-Authenticate") != want {
			t.Errorf("%s: %d %s, WWW-Authenticate %q", name, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
		}
	}
	for _, rt := range routes[1:5] {
		insufficient("read-only "+rt.method+" "+rt.path, e.Do(rt.method, rt.path, readOnly, rt.body), "customer_seats:write")
	}
	insufficient("write-only list", e.Do("GET", routes[0].path, writeOnly, nil), "customer_seats:read")
	if r := e.Do("GET", routes[0].path, readOnly, nil); r.Status != 200 {
		t.Errorf("read-only list: %d %s", r.Status, r.Body)
	}
	// Polling one's own request or batch takes either scope.
	for _, loc := range []string{async.Header.Get("Location"), batch.Header.Get("Location")} {
		for name, tok := range map[string]string{"write-only": writeOnly, "read-only": readOnly} {
			if r := e.Do("GET", loc, tok, nil); r.Status != 200 {
				t.Errorf("%s poll %s: %d %s", name, loc, r.Status, r.Body)
			}
		}
	}
	if n := e.SeatCount(); n != seats {
		t.Errorf("%d seats after refused requests, want %d", n, seats)
	}
	if got := seatdtest.Must(e.DB.Seat(ctx, seat)); got.Status != "pending" {
		t.Errorf("the seat is %s after refused writes", got.Status)
	}
}

// TestOrgAPIValidation: Polar's SeatAssign (no checkout_id), Polar's 400
// and 422 answers, and business refusals; nothing is recorded for a 4xx at
// the edge.
func TestOrgAPIValidation(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{})
	e, ctx := f.e, context.Background()
	off := e.Tenant(seatdtest.TenantOptions{NoPricing: true})
	offToken := e.OrgToken(off.OrgID)
	small := e.Pool("subscription", f.a.CustomerID, "Solo", 1, "active")
	checkout := seatdtest.Must(e.DB.CreateCheckout(ctx, f.a.SubscriptionID, ""))
	requests := func() int {
		var n int
		if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := requests()
	for _, c := range []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		want               string
	}{
		{"checkout only", "POST", orgPath, map[string]any{"checkout_id": checkout, "email": "x@example.com"}, nil, 422, "Exactly one of subscription_id or order_id must be provided"},
		{"both containers", "POST", orgPath, map[string]any{"subscription_id": f.a.SubscriptionID, "order_id": f.aOrder, "email": "x@example.com"}, nil, 422, "Exactly one of subscription_id or order_id"},
		{"no recipient", "POST", orgPath, map[string]any{"subscription_id": f.a.SubscriptionID}, nil, 422, "At least one of email, external_customer_id, customer_id, external_member_id, or member_id must be provided"},
		{"bad email", "POST", orgPath, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "nope"}, nil, 422, `"loc":["body","email"]`},
		{"not JSON", "POST", orgPath, "{", nil, 422, "json_invalid"},
		{"bad Idempotency-Key", "POST", orgPath, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "x@example.com"}, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 422, "Idempotency-Key"},
		{"batch item with a checkout", "POST", orgPath + "/batch", map[string]any{"items": []any{
			map[string]any{"subscription_id": f.a.SubscriptionID, "email": "x@example.com"}, map[string]any{"checkout_id": checkout, "email": "y@example.com"}}},
			nil, 422, `"loc":["body","items",1]`},
		{"empty batch", "POST", orgPath + "/batch", map[string]any{"items": []any{}}, nil, 422, "1 to 1000"},
		{"list without ids", "GET", orgPath, nil, nil, 400, `"detail":"Either subscription_id or order_id must be provided"`},
		{"malformed query id", "GET", orgPath + "?order_id=12", nil, nil, 422, `"loc":["query","order_id"]`},
		{"malformed seat id (revoke)", "DELETE", orgPath + "/nope", nil, nil, 422, `"loc":["path","seat_id"]`},
		{"malformed seat id (resend)", "POST", orgPath + "/nope/resend", nil, nil, 422, `"loc":["path","seat_id"]`},
		{"unknown seat", "DELETE", orgPath + "/00000000-0000-4000-8000-000000000000", nil, nil, 404, "Seat not found"},
	} {
		r := e.Do(c.method, c.path, f.aToken, c.body, c.headers...)
		if r.Status != c.status || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("%s: %d %s, want %d with %s", c.name, r.Status, r.Body, c.status, c.want)
		}
	}
	if n := requests(); n != before+1 { // the unknown seat's revoke went to the worker
		t.Errorf("%d requests recorded by refused calls, want only the unknown seat's revoke", n-before)
	}
	if r := e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": small, "email": "one@example.com"}); r.Status != 200 {
		t.Fatalf("assign: %d %s", r.Status, r.Body)
	}
	for _, c := range []struct {
		name    string
		token   string
		body    map[string]any
		status  int
		code    string
		message string
	}{
		{"pool full", f.aToken, map[string]any{"subscription_id": small, "email": "two@example.com"}, 400, "SeatNotAvailable", "No available seats for " + small},
		{"duplicate", f.aToken, map[string]any{"order_id": f.aOrder, "email": "dup@example.com"}, 200, "", ""},
		{"duplicate again", f.aToken, map[string]any{"order_id": f.aOrder, "email": "DUP@example.com"}, 400, "SeatAlreadyAssigned", "Seat already assigned to customer DUP@example.com"},
		{"unknown customer", f.aToken, map[string]any{"order_id": f.aOrder, "customer_id": "00000000-0000-4000-8000-000000000001"}, 404, "CustomerNotFound", "Customer not found: 00000000-0000-4000-8000-000000000001"},
		{"seat pricing disabled", offToken, map[string]any{"subscription_id": off.SubscriptionID, "email": "x@example.com"}, 403, "FeatureNotEnabled", "Seat-based pricing is not enabled"},
	} {
		r := e.Do("POST", orgPath, c.token, c.body)
		if r.Status != c.status || (c.code != "" && (r.JSON(t)["error"] != c.code || !strings.Contains(r.JSON(t)["detail"].(string), c.message))) {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
		}
	}
	if r := e.Do("GET", orgPath+"?subscription_id="+off.SubscriptionID, offToken, nil); r.Status != 403 {
		t.Errorf("list with seat pricing disabled: %d %s", r.Status, r.Body)
	}
}

// TestOrgTokenNeverReachesAnotherOrganization: on every route, an
// organization token answers 404 for another organization's subscription,
// order, seat, request and batch, exactly like something that does not
// exist, and changes nothing there; the owner's own token reaches each.
func TestOrgTokenNeverReachesAnotherOrganization(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{})
	e, ctx := f.e, context.Background()
	bInvitation := invitationToken(t, e, f.bSeat)
	bSeats := e.SeatCount()
	type call struct {
		name, method, path string
		body               any
		message            string
	}
	calls := []call{
		{"list B's subscription", "GET", orgPath + "?subscription_id=" + f.b.SubscriptionID, nil, "Subscription not found"},
		{"list B's order", "GET", orgPath + "?order_id=" + f.bOrder, nil, "Order not found"},
		{"assign in B's subscription", "POST", orgPath, map[string]any{"subscription_id": f.b.SubscriptionID, "email": "intruder@example.com"}, "Subscription not found"},
		{"assign in B's order", "POST", orgPath, map[string]any{"order_id": f.bOrder, "email": "intruder@example.com", "immediate_claim": true}, "Order not found"},
		{"resend B's seat", "POST", orgPath + "/" + f.bSeat + "/resend", nil, "Seat not found"},
		{"revoke B's seat", "DELETE", orgPath + "/" + f.bSeat, nil, "Seat not found"},
		{"poll B's request", "GET", f.bRequest, nil, "Request not found"},
		{"poll B's batch", "GET", f.bBatch, nil, "Batch not found"},
	}
	for _, async := range []bool{false, true} {
		for _, c := range calls {
			var hdr []string
			if async {
				hdr = []string{"Prefer", "respond-async"}
			}
			r := e.Do(c.method, c.path, f.aToken, c.body, hdr...)
			status, detail := r.Status, r.JSON(t)["detail"]
			if r.Status == 202 { // accepted for the worker to decide: its outcome is the answer
				out, _ := poll(t, e, f.aToken, r.Header.Get("Location"))["error"].(map[string]any)
				status, detail = int(out["status"].(float64)), out["detail"]
			}
			if status != 404 || detail != c.message {
				t.Errorf("%s (async %v): %d %v, want 404 %q", c.name, async, status, detail, c.message)
			}
		}
	}
	// A batch naming B's pools refuses those items the same way.
	r := e.Do("POST", orgPath+"/batch", f.aToken, map[string]any{"items": []any{
		map[string]any{"subscription_id": f.b.SubscriptionID, "email": "intruder@example.com"},
		map[string]any{"order_id": f.bOrder, "email": "intruder@example.com"},
	}})
	if r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	got := poll(t, e, f.aToken, r.Header.Get("Location"))
	for i, it := range got["items"].([]any) {
		if e, _ := it.(map[string]any)["error"].(map[string]any); e["status"] != 404.0 {
			t.Errorf("batch item %d: %v", i, it)
		}
	}
	// Nothing of B's changed: the seat is pending with the same link, no
	// seat was added, B's pools are as they were.
	if got := seatdtest.Must(e.DB.Seat(ctx, f.bSeat)); got.Status != "pending" || invitationToken(t, e, f.bSeat) != bInvitation {
		t.Errorf("B's seat is %s, link changed: %v", got.Status, invitationToken(t, e, f.bSeat) != bInvitation)
	}
	if n := e.SeatCount(); n != bSeats {
		t.Errorf("%d seats, want %d", n, bSeats)
	}
	// B's own token reaches every one of them (the 404s are A's, not
	// broken routes).
	for _, c := range calls {
		if c.method == "DELETE" {
			continue // keep the seat for resend
		}
		r := e.Do(c.method, c.path, f.bToken, c.body)
		if r.Status != 200 {
			t.Errorf("B %s: %d %s", c.name, r.Status, r.Body)
		}
	}
	if r := e.Do("DELETE", orgPath+"/"+f.bSeat, f.bToken, nil); r.Status != 200 {
		t.Errorf("B revokes its seat: %d %s", r.Status, r.Body)
	}
}

// TestOrgIdempotencyKeysAreTheOrganizations: one key names one operation
// of one organization, across its tokens; another organization's keys and
// the organization's customers' keys are their own.
func TestOrgIdempotencyKeysAreTheOrganizations(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{})
	e := f.e
	second := e.OrgToken(f.a.OrgID, storage.ScopeSeatsWrite)
	body := map[string]any{"subscription_id": f.a.SubscriptionID, "email": "keyed@example.com"}
	first := e.Do("POST", orgPath, f.aToken, body, "Idempotency-Key", "k1")
	if first.Status != 200 || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	again := e.Do("POST", orgPath, second, body, "Idempotency-Key", "k1")
	if again.Status != 200 || again.Header.Get("Idempotent-Replayed") != "true" || again.JSON(t)["id"] != first.JSON(t)["id"] {
		t.Errorf("another token of the organization: %d %s", again.Status, again.Body)
	}
	if r := e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "other@example.com"}, "Idempotency-Key", "k1"); r.Status != 409 {
		t.Errorf("the key with another body: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", orgPath+"/batch", f.aToken, map[string]any{"items": []any{body}}, "Idempotency-Key", "k1"); r.Status != 409 {
		t.Errorf("a batch with a single assign's key: %d %s", r.Status, r.Body)
	}
	if r := e.Do("DELETE", orgPath+"/"+first.JSON(t)["id"].(string), f.aToken, nil, "Idempotency-Key", "k1"); r.Status != 409 {
		t.Errorf("a revoke with an assign's key: %d %s", r.Status, r.Body)
	}
	// The same key elsewhere is a new request.
	if r := e.Do("POST", orgPath, f.bToken, map[string]any{"subscription_id": f.b.SubscriptionID, "email": "keyed@example.com"}, "Idempotency-Key", "k1"); r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another organization's key: %d %s", r.Status, r.Body)
	}
	// The pool's customer through the portal: its own key space, so the
	// same key and body is a new request, refused as a duplicate seat.
	if r := e.Do("POST", seatsPath, f.a.Token, body, "Idempotency-Key", "k1"); r.Status != 400 || r.Header.Get("Idempotent-Replayed") != "" || r.JSON(t)["error"] != "SeatAlreadyAssigned" {
		t.Errorf("the customer's key: %d %s", r.Status, r.Body)
	}
	// Batches replay by key too.
	items := map[string]any{"items": []any{map[string]any{"order_id": f.aOrder, "email": "batched@example.com"}}}
	b1 := e.Do("POST", orgPath+"/batch", f.aToken, items, "Idempotency-Key", "kb")
	b2 := e.Do("POST", orgPath+"/batch", second, items, "Idempotency-Key", "kb")
	if b1.Status != 202 || b2.Status != 202 || b2.Header.Get("Idempotent-Replayed") != "true" || b1.JSON(t)["batch_id"] != b2.JSON(t)["batch_id"] {
		t.Errorf("batch replay: %d %s / %d %s", b1.Status, b1.Body, b2.Status, b2.Body)
	}
	var seats int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats s JOIN customers c ON c.id = s.customer_id
		WHERE c.email IN ('keyed@example.com', 'batched@example.com')`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	poll(t, e, f.aToken, b1.Header.Get("Location"))
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats s JOIN customers c ON c.id = s.customer_id
		WHERE c.email IN ('keyed@example.com', 'batched@example.com')`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 3 { // A's keyed seat, B's keyed seat, A's batched seat
		t.Errorf("%d seats, want 3", seats)
	}
}

// TestOrgAsyncAndBatch: Prefer: respond-async answers 202 with a Location
// under the organization API, polled with the organization's token (and
// only with it); a batch spans the pools of several customers of the
// organization and is polled the same way.
func TestOrgAsyncAndBatch(t *testing.T) {
	t.Parallel()
	f := orgSetup(t, seatdtest.Options{})
	e := f.e
	r := e.Do("POST", orgPath, f.aToken, map[string]any{"subscription_id": f.a.SubscriptionID, "email": "later@example.com"}, "Prefer", "respond-async")
	loc := r.Header.Get("Location")
	if r.Status != 202 || !strings.HasPrefix(loc, orgPath+"/requests/") || r.JSON(t)["status"] != "queued" {
		t.Fatalf("async: %d %s %q", r.Status, r.Body, loc)
	}
	got := poll(t, e, f.aToken, loc)
	seat, _ := got["seat"].(map[string]any)
	if got["status"] != "succeeded" || seat["subscription_id"] != f.a.SubscriptionID {
		t.Errorf("polled %v", got)
	}
	id := strings.TrimPrefix(loc, orgPath+"/requests/")
	if r := e.Do("GET", seatsPath+"/requests/"+id, f.a.Token, nil); r.Status != 404 {
		t.Errorf("the customer polls the organization's request: %d %s", r.Status, r.Body)
	}
	if r := e.Do("GET", loc, f.bToken, nil); r.Status != 404 {
		t.Errorf("another organization polls it: %d %s", r.Status, r.Body)
	}
	// An async revoke, polled to its end.
	r = e.Do("DELETE", orgPath+"/"+seat["id"].(string), f.aToken, nil, "Prefer", "respond-async")
	if r.Status != 202 {
		t.Fatalf("async revoke: %d %s", r.Status, r.Body)
	}
	if got := poll(t, e, f.aToken, r.Header.Get("Location")); got["status"] != "succeeded" || got["seat"].(map[string]any)["status"] != "revoked" {
		t.Errorf("async revoke polled %v", got)
	}

	small := e.Pool("subscription", f.a.CustomerID, "Solo", 1, "active")
	items := []map[string]any{
		{"subscription_id": f.a.SubscriptionID, "email": "b1@example.com"},
		{"order_id": f.aOrder, "email": "b2@example.com", "immediate_claim": true}, // another customer's pool
		{"subscription_id": small, "email": "b3@example.com"},
		{"subscription_id": small, "email": "b4@example.com"},              // pool full
		{"subscription_id": f.b.SubscriptionID, "email": "b5@example.com"}, // another organization's
		{"order_id": f.aOrder, "external_customer_id": "no-such-customer"}, // no such customer
	}
	r = e.Do("POST", orgPath+"/batch", f.aToken, map[string]any{"items": items})
	bloc := r.Header.Get("Location")
	if r.Status != http.StatusAccepted || !strings.HasPrefix(bloc, orgPath+"/batches/") || r.JSON(t)["size"] != 6.0 {
		t.Fatalf("batch: %d %s %q", r.Status, r.Body, bloc)
	}
	got = poll(t, e, f.aToken, bloc)
	counts := got["counts"].(map[string]any)
	if counts["succeeded"] != 3.0 || counts["failed"] != 3.0 {
		t.Errorf("counts %v", counts)
	}
	want := []string{"", "", "", "SeatNotAvailable", "ResourceNotFound", "CustomerNotFound"}
	for i, it := range got["items"].([]any) {
		item := it.(map[string]any)
		if want[i] == "" {
			if item["status"] != "succeeded" || item["seat"] == nil {
				t.Errorf("item %d: %v", i, item)
			}
		} else if e, _ := item["error"].(map[string]any); item["status"] != "failed" || e["error"] != want[i] {
			t.Errorf("item %d: %v, want %s", i, item, want[i])
		}
	}
	for name, tok := range map[string]string{"the customer": f.a.Token, "another organization": f.bToken} {
		path := bloc
		if tok == f.a.Token {
			path = seatsPath + "/batches/" + strings.TrimPrefix(bloc, orgPath+"/batches/")
		}
		if r := e.Do("GET", path, tok, nil); r.Status != 404 {
			t.Errorf("%s reads the organization's batch: %d %s", name, r.Status, r.Body)
		}
	}
}

// TestOrgTokenRevocationAndExpiryTakeEffect: an ingress trusts a token it
// looked up for at most a second (the session cache), so a revoked token
// stops working within a second on every replica; an expired one stops at
// its expiry exactly, cached or not.
func TestOrgTokenRevocationAndExpiryTakeEffect(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{})
	list := orgPath + "?subscription_id=" + ten.SubscriptionID

	tok, created, err := e.DB.CreateOrgToken(ctx, e.Keys, ten.OrgID, storage.OrgScopes, 0, "to revoke")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.Do("GET", list, tok, nil); r.Status != 200 { // now cached
		t.Fatalf("before revoking: %d %s", r.Status, r.Body)
	}
	if _, err := e.DB.RevokeOrgToken(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now()
	storagetest.Eventually(t, 3*time.Second, "the revoked token to stop working", func() error {
		if r := e.Do("GET", list, tok, nil); r.Status != 401 {
			return fmt.Errorf("it still answers %d", r.Status)
		}
		return nil
	})
	if d := time.Since(revokedAt); d > 1500*time.Millisecond {
		t.Errorf("the revoked token worked for %s, want at most the 1 s cache", d)
	}

	short, st, err := e.DB.CreateOrgToken(ctx, e.Keys, ten.OrgID, storage.OrgScopes, 1500*time.Millisecond, "short")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.Do("GET", list, short, nil); r.Status != 200 {
		t.Fatalf("before expiry: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Until(*st.ExpiresAt))
	if r := e.Do("GET", list, short, nil); r.Status != 401 {
		t.Errorf("just after expiry: %d %s", r.Status, r.Body)
	}
}

// TestOrgRateLimitsAndBadTokens: each token has its own write and read
// buckets (as sessions do); bad organization tokens charge the client
// address's bucket, which once empty refuses every bearer request from
// that address before any lookup.
func TestOrgRateLimitsAndBadTokens(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{RateLimit: 1, RateBurst: 3})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 20})
	first, second := e.OrgToken(ten.OrgID), e.OrgToken(ten.OrgID)
	limited := 0
	for i := range 5 {
		r := e.Do("POST", orgPath, first, map[string]any{"subscription_id": ten.SubscriptionID, "email": fmt.Sprintf("rl%d@example.com", i)})
		if r.Status == 429 {
			limited++
			if r.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if limited == 0 {
		t.Error("5 quick writes with burst 3 were never limited")
	}
	if r := e.Do("POST", orgPath, second, map[string]any{"subscription_id": ten.SubscriptionID, "email": "second@example.com"}); r.Status != 200 {
		t.Errorf("another token of the organization: %d %s", r.Status, r.Body)
	}
	if r := e.Do("GET", orgPath+"?subscription_id="+ten.SubscriptionID, first, nil); r.Status != 200 {
		t.Errorf("a read while writes are limited: %d %s", r.Status, r.Body)
	}

	g := seatdtest.New(t, seatdtest.Options{AuthFailLimit: 0.1, AuthFailBurst: 5})
	ten = g.Tenant(seatdtest.TenantOptions{})
	good := g.OrgToken(ten.OrgID)
	list := orgPath + "?subscription_id=" + ten.SubscriptionID
	for range 5 {
		if r := g.Do("GET", list, secret.NewPrefixedToken("polar_oat_"), nil); r.Status != 401 {
			t.Fatalf("bad token: %d %s", r.Status, r.Body)
		}
	}
	if r := g.Do("GET", list, good, nil); r.Status != 429 {
		t.Errorf("a good token from an address that sent 5 bad ones: %d %s", r.Status, r.Body)
	}
}

// TestOrgTokensAreNeverLogged: whatever happens to a request (success,
// refusal, bad or expired token, missing scope), no log line carries the
// organization token or its stored hash.
func TestOrgTokensAreNeverLogged(t *testing.T) {
	t.Parallel()
	// A file, not a buffer: every goroutine of the pipeline may write to it
	// while the test reads.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "seatd.log"))
	if err != nil {
		t.Fatal(err)
	}
	e := seatdtest.New(t, seatdtest.Options{Log: slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 1})
	tok := e.OrgToken(ten.OrgID)
	readOnly := e.OrgToken(ten.OrgID, storage.ScopeSeatsRead)
	for _, c := range []struct {
		token string
		body  map[string]any
	}{
		{tok, map[string]any{"subscription_id": ten.SubscriptionID, "email": "a@example.com"}},
		{tok, map[string]any{"subscription_id": ten.SubscriptionID, "email": "b@example.com"}}, // pool full
		{readOnly, map[string]any{"subscription_id": ten.SubscriptionID, "email": "c@example.com"}},
		{tok[:len(tok)-1] + "x", map[string]any{"subscription_id": ten.SubscriptionID, "email": "d@example.com"}},
	} {
		e.Do("POST", orgPath, c.token, c.body)
	}
	e.Do("GET", orgPath, tok, nil)
	e.Close()
	b, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	logs := string(b)
	if !strings.Contains(logs, "/v1/customer-seats") {
		t.Fatalf("the test saw no access log: %q", logs)
	}
	for _, secretText := range []string{tok, tok[len("polar_oat_"):], readOnly[len("polar_oat_"):], hex.EncodeToString(e.Keys.AccessTokenHash(tok))} {
		if strings.Contains(logs, secretText) {
			t.Errorf("a log line carries %q", secretText)
		}
	}
}
