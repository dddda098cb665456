package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// These tests hold the customer portal to what Polar's clients read
// (issue 11): the member on every seat, member identifiers in SeatAssign,
// products with ids, the claimed subscriptions list and unknown routes.

// wantError checks an error answer: status, Polar's error name and message.
func wantError(t *testing.T, what string, r seatdtest.Response, status int, name, detail string) {
	t.Helper()
	var body map[string]any
	_ = json.Unmarshal(r.Body, &body)
	if r.Status != status || body["error"] != name || body["detail"] != detail {
		t.Errorf("%s: %d %s, want %d %s %q", what, r.Status, r.Body, status, name, detail)
	}
}

// TestSeatsCarryTheirMember: every answer that carries a seat (assign,
// list, resend, the poll view, claim, revoke) and every seat event (the
// webhook payload's data) has "member": the seat's Member in full, or null
// (customer model, and after a revoke).
func TestSeatsCarryTheirMember(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{MemberModel: true, Product: "Team"})
	dev := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "dev@example.com",
		Name: "Dev Eloper", ExternalID: "usr_1337"}))
	var created time.Time
	if err := e.DB.Pool.QueryRow(ctx, `SELECT created_at FROM members WHERE id = $1`, dev).Scan(&created); err != nil {
		t.Fatal(err)
	}
	wantMember := map[string]any{"id": dev, "created_at": created.UTC().Format(time.RFC3339Nano), "modified_at": nil,
		"customer_id": ten.CustomerID, "email": "dev@example.com", "name": "Dev Eloper", "external_id": "usr_1337", "role": "member"}
	checkMember := func(what string, seat any, want map[string]any) {
		t.Helper()
		s, _ := seat.(map[string]any)
		m, present := s["member"]
		if !present {
			t.Errorf("%s: no member property: %v", what, s)
			return
		}
		if want == nil {
			if m != nil {
				t.Errorf("%s: member %v, want null", what, m)
			}
			return
		}
		got, _ := m.(map[string]any)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: member.%s = %v, want %v", what, k, got[k], v)
			}
		}
		if s["member_id"] != want["id"] || s["email"] != want["email"] || s["customer_email"] != want["email"] {
			t.Errorf("%s: member_id %v email %v customer_email %v, want the member's", what, s["member_id"], s["email"], s["customer_email"])
		}
	}

	assigned := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "member_id": dev})
	if assigned.Status != 200 {
		t.Fatalf("assign by member_id: %d %s", assigned.Status, assigned.Body)
	}
	seat := assigned.JSON(t)
	id := seat["id"].(string)
	checkMember("assign", seat, wantMember)
	list := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, ten.Token, nil).JSON(t)
	checkMember("list", list["seats"].([]any)[0], wantMember)
	checkMember("resend", e.Do("POST", seatsPath+"/"+id+"/resend", ten.Token, nil).JSON(t), wantMember)

	async := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "new@example.com"},
		"Prefer", "respond-async")
	polled := poll(t, e, ten.Token, async.Header.Get("Location"))
	newSeat, _ := polled["seat"].(map[string]any)
	newMember, _ := newSeat["member"].(map[string]any)
	if newMember["email"] != "new@example.com" || newMember["role"] != "member" || newMember["customer_id"] != ten.CustomerID ||
		newMember["name"] != nil || newMember["external_id"] != nil || newSeat["member_id"] != newMember["id"] {
		t.Errorf("poll view: the member created for new@example.com is %v", newSeat["member"])
	}
	var rowEmail string
	if err := e.DB.Pool.QueryRow(ctx, `SELECT email FROM members WHERE id = $1 AND customer_id = $2`, newMember["id"], ten.CustomerID).Scan(&rowEmail); err != nil || rowEmail != "new@example.com" {
		t.Errorf("the member the poll view names is not in Postgres: %q %v", rowEmail, err)
	}

	claim := e.Do("POST", claimPath, "", map[string]any{"invitation_token": invitationToken(t, e, id)})
	if claim.Status != 200 {
		t.Fatalf("claim: %d %s", claim.Status, claim.Body)
	}
	checkMember("claim", claim.JSON(t)["seat"], wantMember)
	revoked := e.Do("DELETE", seatsPath+"/"+id, ten.Token, nil).JSON(t)
	checkMember("revoke", revoked, nil)

	// The customer model's seats have no member: null, not absent.
	plain := e.Tenant(seatdtest.TenantOptions{})
	checkMember("customer model", e.Do("POST", seatsPath, plain.Token,
		map[string]any{"subscription_id": plain.SubscriptionID, "email": "c@example.com"}).JSON(t), nil)

	// The seat events (the data of the webhooks) carry the member too.
	cons, err := e.JS.OrderedConsumer(ctx, events.SeatEventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]map[string]any{}
	seatdtest.WaitFor(t, 10*time.Second, "the seat's three events", func() bool {
		batch, err := cons.Fetch(20, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev map[string]any
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if data := ev["data"].(map[string]any); data["id"] == id {
				byType[ev["type"].(string)] = data
			}
		}
		return len(byType) == 3
	})
	checkMember("customer_seat.assigned", byType["customer_seat.assigned"], wantMember)
	checkMember("customer_seat.claimed", byType["customer_seat.claimed"], wantMember)
	checkMember("customer_seat.revoked", byType["customer_seat.revoked"], nil)
}

// TestAssignByMemberIdentifiers follows Polar's SeatAssign and
// _resolve_member over HTTP: a member named by id or by external id, a
// member created with an external id, the refusals with Polar's names and
// messages, and member identifiers in an organization without the member
// model (the seat then goes to the purchaser's member, as in Polar).
func TestAssignByMemberIdentifiers(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{MemberModel: true, Seats: 10})
	ops := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "ops@example.com", ExternalID: "crm-ops"}))
	assign := func(body map[string]any) seatdtest.Response {
		body["subscription_id"] = ten.SubscriptionID
		return e.Do("POST", seatsPath, ten.Token, body)
	}
	stranger := "44444444-4444-4444-8444-444444444444"
	wantError(t, "unknown member_id", assign(map[string]any{"member_id": stranger}), 404, "MemberNotFound", "Member not found: "+stranger)
	wantError(t, "unknown external_member_id", assign(map[string]any{"external_member_id": "crm-nobody"}), 404, "MemberNotFound",
		"Member not found: crm-nobody")
	wantError(t, "external_member_id with another email", assign(map[string]any{"external_member_id": "crm-ops", "email": "else@example.com"}),
		400, "MemberEmailMismatch", "Member with external_member_id 'crm-ops' exists but has a different email than 'else@example.com'")
	wantError(t, "unknown customer_id with the member model", assign(map[string]any{"customer_id": stranger}), 400,
		"InvalidSeatAssignmentRequest", "Customer not found for the provided customer_id or external_customer_id.")
	other := e.Tenant(seatdtest.TenantOptions{MemberModel: true})
	theirs := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: other.CustomerID, Email: "theirs@example.com"}))
	wantError(t, "another customer's member", assign(map[string]any{"member_id": theirs}), 404, "MemberNotFound", "Member not found: "+theirs)

	byExt := assign(map[string]any{"external_member_id": "crm-ops", "immediate_claim": true})
	if byExt.Status != 200 || byExt.JSON(t)["member_id"] != ops {
		t.Errorf("by external_member_id: %d %s", byExt.Status, byExt.Body)
	}
	wantError(t, "the same member by id", assign(map[string]any{"member_id": ops}), 400, "SeatAlreadyAssigned",
		"Seat already assigned to customer ops@example.com")
	created := assign(map[string]any{"external_member_id": "crm-7", "email": "seven@example.com"})
	if created.Status != 200 {
		t.Fatalf("new member with an external id: %d %s", created.Status, created.Body)
	}
	if m, _ := created.JSON(t)["member"].(map[string]any); m["external_id"] != "crm-7" || m["email"] != "seven@example.com" {
		t.Errorf("new member: %s", created.Body)
	}
	var ext string
	if err := e.DB.Pool.QueryRow(ctx, `SELECT external_id FROM members WHERE customer_id = $1 AND email = 'seven@example.com'`,
		ten.CustomerID).Scan(&ext); err != nil || ext != "crm-7" {
		t.Errorf("member row: %q %v", ext, err)
	}

	// Without the member model, member identifiers still take the member
	// path (Polar: "if member_model_enabled or external_member_id or
	// member_id"); customer identifiers keep Polar's legacy messages.
	legacy := e.Tenant(seatdtest.TenantOptions{})
	lm := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: legacy.CustomerID, Email: "lm@example.com"}))
	r := e.Do("POST", seatsPath, legacy.Token, map[string]any{"subscription_id": legacy.SubscriptionID, "member_id": lm})
	if s := r.JSON(t); r.Status != 200 || s["customer_id"] != legacy.CustomerID || s["member_id"] != lm || s["email"] != "lm@example.com" {
		t.Errorf("member_id without the member model: %d %s", r.Status, r.Body)
	}
	wantError(t, "unknown external_customer_id", e.Do("POST", seatsPath, legacy.Token,
		map[string]any{"subscription_id": legacy.SubscriptionID, "external_customer_id": "crm-x"}), 404, "CustomerNotFound", "Customer not found: crm-x")
	wantError(t, "unknown customer_id", e.Do("POST", seatsPath, legacy.Token,
		map[string]any{"subscription_id": legacy.SubscriptionID, "customer_id": stranger}), 404, "CustomerNotFound", "Customer not found: "+stranger)
	if n := e.SeatCount(); n != 3 {
		t.Errorf("%d seats, want the 3 granted", n)
	}
}

// TestProductsHaveIDs: the claim info's product_id is the product's id,
// with Polar's SeatClaimInfo properties all present, and an unknown token
// is 404 with Polar's message.
func TestProductsHaveIDs(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	seat := assignPending(t, e, ten, "invitee@example.com")
	info := e.Do("GET", claimPath+"/"+invitationToken(t, e, seat["id"].(string)), "", nil)
	j := info.JSON(t)
	if info.Status != 200 || j["product_id"] != ten.ProductID || j["product_name"] != "Pro Plan" {
		t.Errorf("claim info: %d %s, want product %s", info.Status, info.Body, ten.ProductID)
	}
	wantError(t, "unknown invitation token", e.Do("GET", claimPath+"/nope", "", nil), 404, "ResourceNotFound",
		"Invalid or expired invitation token")
}

// TestUnknownRoutesAskForATokenFirst: under /v1/ an unknown path answers
// 401 Unauthorized (with WWW-Authenticate) to a caller without a valid
// token and 404 ResourceNotFound to one with; a known path with the wrong
// method stays 405 with Allow.
func TestUnknownRoutesAskForATokenFirst(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	for _, path := range []string{"/v1/customer-portal/nope", "/v1/customer-portal/seats/subscriptions/extra", "/v1/products"} {
		for _, tok := range []string{"", "polar_cst_not-a-session"} {
			r := e.Do("GET", path, tok, nil)
			if r.Status != 401 || r.JSON(t)["error"] != "Unauthorized" || r.Header.Get("WWW-Authenticate") != `Bearer realm="polar"` {
				t.Errorf("GET %s with token %q: %d %s WWW-Authenticate %q", path, tok, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
			}
		}
		wantError(t, "GET "+path+" with a session", e.Do("GET", path, ten.Token, nil), 404, "ResourceNotFound", "Not found")
	}
	// DELETE: "subscriptions" as a seat id.
	if r := e.Do("PUT", seatsPath+"/subscriptions", "", nil); r.Status != 405 || r.Header.Get("Allow") != "GET, HEAD, DELETE" {
		t.Errorf("PUT /seats/subscriptions: %d Allow %q", r.Status, r.Header.Get("Allow"))
	}
}

// TestListClaimedSubscriptions: GET /v1/customer-portal/seats/subscriptions
// lists the subscriptions in which the caller holds a claimed seat (not a
// pending or revoked one), oldest first, as Polar's
// ListResource[CustomerSubscription] with every property of the SDK's
// types; pages as Polar's pagination does.
func TestListClaimedSubscriptions(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Team", Seats: 5})
	// A second subscription of its own product, with what a seller records
	// of it, started on the last day of a month; and a third.
	yearly, err := e.DB.CreateProduct(ctx, storage.ProductSpec{OrganizationID: ten.OrgID, Name: "Team yearly", Description: "Billed yearly",
		RecurringInterval: "year"})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)
	sub2, err := e.DB.CreatePool(ctx, storage.PoolSpec{Kind: "subscription", CustomerID: ten.CustomerID, ProductID: yearly.ID, Seats: 3,
		Amount: 120000, Currency: "EUR", StartedAt: started})
	if err != nil {
		t.Fatal(err)
	}
	checkout := seatdtest.Must(e.DB.CreateCheckout(ctx, sub2, ""))
	sub3 := e.Pool("subscription", ten.CustomerID, "Solo", 2, "active")

	invitee := seatdtest.Must(e.DB.CreateCustomer(ctx, ten.OrgID, "invitee@example.com", ""))
	claimIn := func(sub string, immediate bool) string {
		r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": sub, "customer_id": invitee, "immediate_claim": immediate})
		if r.Status != 200 {
			t.Fatalf("assign in %s: %d %s", sub, r.Status, r.Body)
		}
		return r.JSON(t)["id"].(string)
	}
	claimIn(sub3, true)
	claimIn(ten.SubscriptionID, false) // pending: not listed
	claimIn(sub2, true)
	revokedSeat := e.Pool("subscription", ten.CustomerID, "Gone", 1, "active")
	e.Do("DELETE", seatsPath+"/"+claimIn(revokedSeat, true), ten.Token, nil) // revoked: not listed
	tok := e.Session(invitee, "")

	list := func(query string) (seatdtest.Response, map[string]any) {
		r := e.Do("GET", seatsPath+"/subscriptions"+query, tok, nil)
		var j map[string]any
		_ = json.Unmarshal(r.Body, &j)
		return r, j
	}
	r, all := list("")
	if r.Status != 200 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	items, _ := all["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["id"] != sub2 || items[1].(map[string]any)["id"] != sub3 {
		t.Fatalf("items %s, want %s then %s", r.Body, sub2, sub3)
	}
	if p := all["pagination"].(map[string]any); p["total_count"] != 2.0 || p["max_page"] != 1.0 {
		t.Errorf("pagination %v", p)
	}
	// What the seller recorded, what seatd derives, and what it cannot know.
	s := items[0].(map[string]any)
	want := map[string]any{"amount": 120000.0, "currency": "eur", "recurring_interval": "year", "recurring_interval_count": 1.0,
		"status": "active", "seats": 3.0, "customer_id": ten.CustomerID, "product_id": yearly.ID, "checkout_id": checkout,
		"started_at": "2025-01-31T12:00:00Z", "cancel_at_period_end": false, "canceled_at": nil, "ended_at": nil, "ends_at": nil,
		"trial_start": nil, "discount_id": nil, "pending_update": nil}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("subscription %s = %v, want %v", k, s[k], v)
		}
	}
	start, end := events.BillingPeriod(started, "year", 1, time.Now())
	if s["current_period_start"] != start.Format(time.RFC3339) || s["current_period_end"] != end.Format(time.RFC3339) {
		t.Errorf("period %v – %v, want %s – %s", s["current_period_start"], s["current_period_end"], start, end)
	}
	for _, k := range []string{"prices", "meters"} {
		if l, ok := s[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %v, want []", k, s[k])
		}
	}
	prod := s["product"].(map[string]any)
	org := prod["organization"].(map[string]any)
	if prod["id"] != yearly.ID || prod["name"] != "Team yearly" || prod["description"] != "Billed yearly" || prod["is_recurring"] != true ||
		prod["recurring_interval"] != "year" || prod["organization_id"] != ten.OrgID || org["id"] != ten.OrgID || org["name"] != "Acme" {
		t.Errorf("product %v", prod)
	}
	if f := org["organization_features"].(map[string]any); f["member_model_enabled"] != false {
		t.Errorf("organization features %v", f)
	}

	// Pages.
	for _, c := range []struct {
		query string
		ids   []string
		max   float64
	}{
		{"?limit=1", []string{sub2}, 2},
		{"?page=2&limit=1", []string{sub3}, 2},
		{"?page=3&limit=1", nil, 2},
		{"?limit=1000", []string{sub2, sub3}, 1}, // clamped to 100
		{"?page=99999999999999999999", nil, 1},
	} {
		r, j := list(c.query)
		var ids []string
		for _, it := range j["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		p := j["pagination"].(map[string]any)
		if r.Status != 200 || fmt.Sprint(ids) != fmt.Sprint(c.ids) || p["total_count"] != 2.0 || p["max_page"] != c.max {
			t.Errorf("%s: %d items %v pagination %v, want %v max_page %v", c.query, r.Status, ids, p, c.ids, c.max)
		}
	}
	for query, loc := range map[string]string{"?page=0": "page", "?limit=-1": "limit", "?page=abc": "page", "?limit=": "limit"} {
		r, j := list(query)
		detail, _ := j["detail"].([]any)
		first, _ := detail[0].(map[string]any)
		if r.Status != 422 || j["error"] != "RequestValidationError" || fmt.Sprint(first["loc"]) != fmt.Sprint([]any{"query", loc}) {
			t.Errorf("%s: %d %s", query, r.Status, r.Body)
		}
	}
	if r := e.Do("GET", seatsPath+"/subscriptions", "", nil); r.Status != 401 || r.JSON(t)["error"] != "Unauthorized" {
		t.Errorf("without a token: %d %s", r.Status, r.Body)
	}
	// The purchaser holds no claimed seat itself.
	if j := e.Do("GET", seatsPath+"/subscriptions", ten.Token, nil).JSON(t); j["pagination"].(map[string]any)["total_count"] != 0.0 {
		t.Errorf("the purchaser's own list: %v", j)
	}
}

// TestListClaimedSubscriptionsOfMembers: with the member model a member
// session lists the subscriptions where that member holds a claimed seat;
// the purchaser's customer session, whose id every such seat carries,
// lists each of them once (Polar filters on the seat's customer_id too).
func TestListClaimedSubscriptionsOfMembers(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{MemberModel: true})
	sub2 := e.Pool("subscription", ten.CustomerID, "Extra", 5, "active")
	alice := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "alice@example.com"}))
	bob := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "bob@example.com"}))
	for _, a := range []map[string]any{
		{"subscription_id": ten.SubscriptionID, "member_id": alice, "immediate_claim": true},
		{"subscription_id": ten.SubscriptionID, "member_id": bob, "immediate_claim": true},
		{"subscription_id": sub2, "member_id": bob, "immediate_claim": true},
	} {
		if r := e.Do("POST", seatsPath, ten.Token, a); r.Status != 200 {
			t.Fatalf("assign %v: %d %s", a, r.Status, r.Body)
		}
	}
	ids := func(token string) string {
		r := e.Do("GET", seatsPath+"/subscriptions", token, nil)
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var got []string
		for _, it := range r.JSON(t)["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		return strings.Join(got, ",")
	}
	if got := ids(e.Session(ten.CustomerID, alice)); got != ten.SubscriptionID {
		t.Errorf("alice: %s, want %s", got, ten.SubscriptionID)
	}
	// A canceled subscription is listed as Polar lists it: canceled, with
	// when it was canceled and ended, and the period it ended in.
	ended := e.Pool("subscription", ten.CustomerID, "Old", 1, "canceled")
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ended, "member_id": alice, "immediate_claim": true}); r.Status != 200 {
		t.Fatalf("assign in the canceled subscription: %d %s", r.Status, r.Body)
	}
	r := e.Do("GET", seatsPath+"/subscriptions", e.Session(ten.CustomerID, alice), nil)
	items := r.JSON(t)["items"].([]any)
	last := items[len(items)-1].(map[string]any)
	if len(items) != 2 || last["id"] != ended || last["status"] != "canceled" || last["canceled_at"] == nil ||
		last["ended_at"] == nil || last["ends_at"] != last["ended_at"] {
		t.Errorf("alice with a canceled subscription: %s", r.Body)
	}
	endedAt, _ := time.Parse(time.RFC3339, last["ended_at"].(string))
	from, _ := time.Parse(time.RFC3339, last["current_period_start"].(string))
	to, _ := time.Parse(time.RFC3339, last["current_period_end"].(string))
	if endedAt.Before(from) || !endedAt.Before(to) {
		t.Errorf("the canceled subscription's period %s – %s does not hold its end %s", from, to, endedAt)
	}
	if got := ids(e.Session(ten.CustomerID, bob)); got != ten.SubscriptionID+","+sub2 {
		t.Errorf("bob: %s", got)
	}
	if got := ids(ten.Token); got != ten.SubscriptionID+","+sub2+","+ended {
		t.Errorf("the purchaser: %s", got)
	}
}

// TestOldLedgerRowsRender: outcomes recorded before Polar's names (seatd's
// codes, seats without a member) are answered with Polar's names and a
// null member when polled.
func TestOldLedgerRowsRender(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	refused, granted, seat := "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002", "b0000000-0000-4000-8000-000000000001"
	for _, row := range []struct{ id, status, code, result string }{
		{refused, "failed", "no_available_seats", `{"request_id":"` + refused + `","code":"no_available_seats","detail":"No available seats"}`},
		{granted, "succeeded", "ok", `{"request_id":"` + granted + `","code":"ok","seat":{"created_at":"2026-01-02T03:04:05Z","modified_at":null,` +
			`"id":"` + seat + `","subscription_id":"` + ten.SubscriptionID + `","order_id":null,"status":"claimed","customer_id":null,` +
			`"member_id":null,"email":null,"customer_email":"x@example.com","invitation_token_expires_at":null,` +
			`"claimed_at":"2026-01-02T03:04:05Z","revoked_at":null,"seat_metadata":null}}`},
	} {
		if _, err := e.DB.Pool.Exec(context.Background(), `INSERT INTO requests (id, op, caller, payload, status, code, result)
			VALUES ($1, 'assign', $2, '{}', $3, $4, $5)`, row.id, ten.CustomerID, row.status, row.code, row.result); err != nil {
			t.Fatal(err)
		}
	}
	got := e.Do("GET", seatsPath+"/requests/"+refused, ten.Token, nil).JSON(t)
	if errObj, _ := got["error"].(map[string]any); errObj["error"] != "SeatNotAvailable" || errObj["status"] != 400.0 || errObj["detail"] != "No available seats" {
		t.Errorf("old refusal: %v", got)
	}
	got = e.Do("GET", seatsPath+"/requests/"+granted, ten.Token, nil).JSON(t)
	s, _ := got["seat"].(map[string]any)
	if m, present := s["member"]; !present || m != nil || s["id"] != seat {
		t.Errorf("old seat: %v", got)
	}
}
