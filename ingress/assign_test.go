package ingress_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

const seatsPath = "/v1/customer-portal/seats"

func TestAssignImmediateClaimBySubscription(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 2})
	resp := e.Do("POST", seatsPath, ten.Token, map[string]any{
		"subscription_id": ten.SubscriptionID, "email": "Alice@Example.com", "immediate_claim": true,
		"metadata": map[string]any{"team": "red"}})
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	seat := resp.JSON(t)
	for _, k := range []string{"created_at", "modified_at", "id", "subscription_id", "order_id", "status", "customer_id",
		"member_id", "email", "customer_email", "invitation_token_expires_at", "claimed_at", "revoked_at", "seat_metadata"} {
		if _, ok := seat[k]; !ok {
			t.Errorf("CustomerSeat lacks %q: %s", k, resp.Body)
		}
	}
	if seat["status"] != "claimed" || seat["claimed_at"] == nil || seat["invitation_token_expires_at"] != nil {
		t.Errorf("want a claimed seat without invitation, got %s", resp.Body)
	}
	if seat["subscription_id"] != ten.SubscriptionID || seat["customer_email"] != "Alice@Example.com" {
		t.Errorf("wrong pool or recipient: %s", resp.Body)
	}
	if m, _ := seat["seat_metadata"].(map[string]any); m["team"] != "red" {
		t.Errorf("metadata not kept: %s", resp.Body)
	}
	// The seat is in Postgres, with the customer created for the email.
	var status string
	var used int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT s.status, sub.seats_used FROM seats s
		JOIN subscriptions sub ON sub.id = s.subscription_id WHERE s.id = $1`, seat["id"]).Scan(&status, &used); err != nil {
		t.Fatal(err)
	}
	if status != "claimed" || used != 1 {
		t.Errorf("database has status %q, seats_used %d", status, used)
	}
	var invitations int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invitations`).Scan(&invitations); err != nil {
		t.Fatal(err)
	}
	if invitations != 0 {
		t.Errorf("immediate claim created %d invitations", invitations)
	}
}

func TestAssignPendingCreatesInvitation(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	resp := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "bob@example.com"})
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	seat := resp.JSON(t)
	if seat["status"] != "pending" || seat["claimed_at"] != nil {
		t.Fatalf("want pending: %s", resp.Body)
	}
	exp, err := time.Parse(time.RFC3339Nano, seat["invitation_token_expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("invitation expires in %s, want ~24h", d)
	}
	if strings.Contains(string(resp.Body), "token\"") {
		t.Errorf("response leaks a token: %s", resp.Body)
	}
	var hash []byte
	var state string
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT s.invitation_token_hash, i.delivery_state FROM seats s
		JOIN invitations i ON i.id = s.invitation_id WHERE s.id = $1`, seat["id"]).Scan(&hash, &state); err != nil {
		t.Fatal(err)
	}
	if len(hash) != 32 || state == "" {
		t.Errorf("want a hashed token and a due invitation, got %d-byte hash, state %q", len(hash), state)
	}
	// The mail request reaches the mail stream through the outbox.
	seatdtest.WaitFor(t, 5*time.Second, "mail request published", func() bool {
		s, err := e.JS.Stream(context.Background(), events.MailStream)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 1
	})
}

func TestAssignResolution(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 10})
	must := func(id string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	order := e.Pool("order", ten.CustomerID, "Desk", 3, "paid")
	unpaid := e.Pool("order", ten.CustomerID, "Desk", 3, "pending")
	coSub := must(e.DB.CreateCheckout(ctx, ten.SubscriptionID, ""))
	coOrder := must(e.DB.CreateCheckout(ctx, "", order))
	known := must(e.DB.CreateCustomer(ctx, ten.OrgID, "known@example.com", "ext-42"))
	known2 := must(e.DB.CreateCustomer(ctx, ten.OrgID, "known2@example.com", ""))
	otherOrg := must(e.DB.CreateOrganization(ctx, "Other", true, false))
	foreign := must(e.DB.CreateCustomer(ctx, otherOrg, "foreign@example.com", "ext-foreign"))

	cases := []struct {
		name   string
		body   map[string]any
		status int
		check  func(seat map[string]any) string
	}{
		{"subscription+email", map[string]any{"subscription_id": ten.SubscriptionID, "email": "a@example.com"}, 200, nil},
		{"order+customer_id", map[string]any{"order_id": order, "customer_id": known}, 200, func(s map[string]any) string {
			if s["order_id"] != order || s["customer_id"] != known || s["subscription_id"] != nil {
				return "wrong order seat"
			}
			return ""
		}},
		{"checkout→subscription+external id", map[string]any{"checkout_id": coSub, "external_customer_id": "ext-42"}, 200, func(s map[string]any) string {
			if s["subscription_id"] != ten.SubscriptionID || s["customer_id"] != known {
				return "checkout did not resolve to the subscription"
			}
			return ""
		}},
		{"checkout→order", map[string]any{"checkout_id": coOrder, "customer_id": known2}, 200, func(s map[string]any) string {
			if s["order_id"] != order {
				return "checkout did not resolve to the order"
			}
			return ""
		}},
		{"unpaid order", map[string]any{"order_id": unpaid, "email": "b@example.com"}, 400, nil},
		{"unknown customer_id", map[string]any{"subscription_id": ten.SubscriptionID, "customer_id": "00000000-0000-4000-8000-000000000001"}, 404, nil},
		{"customer of another org", map[string]any{"subscription_id": ten.SubscriptionID, "customer_id": foreign}, 404, nil},
		{"external id of another org", map[string]any{"subscription_id": ten.SubscriptionID, "external_customer_id": "ext-foreign"}, 404, nil},
		{"unknown subscription", map[string]any{"subscription_id": "00000000-0000-4000-8000-000000000002", "email": "c@example.com"}, 404, nil},
		{"unknown checkout", map[string]any{"checkout_id": "00000000-0000-4000-8000-000000000003", "email": "c@example.com"}, 404, nil},
		{"same email again, other case", map[string]any{"subscription_id": ten.SubscriptionID, "email": "A@EXAMPLE.COM"}, 400, nil},
	}
	for _, c := range cases {
		resp := e.Do("POST", seatsPath, ten.Token, c.body)
		if resp.Status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.Status, c.status, resp.Body)
			continue
		}
		body := resp.JSON(t)
		if c.status != 200 {
			if body["error"] == nil || body["detail"] == nil {
				t.Errorf("%s: error body lacks error/detail: %s", c.name, resp.Body)
			}
			continue
		}
		if c.check != nil {
			if msg := c.check(body); msg != "" {
				t.Errorf("%s: %s: %s", c.name, msg, resp.Body)
			}
		}
	}
	// The email path found-or-created exactly one customer for a@example.com.
	var n int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM customers WHERE organization_id = $1 AND lower(email) = 'a@example.com'`, ten.OrgID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d customers for a@example.com, want 1", n)
	}
}

func TestAssignErrors(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 1})
	noPricing := e.Tenant(seatdtest.TenantOptions{NoPricing: true})
	other := e.Tenant(seatdtest.TenantOptions{})
	readOnly := e.Session(ten.CustomerID, "", "customer_portal:read")
	member := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "m@example.com", Role: "member"}))
	memberTok := e.Session(ten.CustomerID, member)
	expired, _, err := e.DB.CreateSession(ctx, ten.CustomerID, "", nil, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	body := map[string]any{"subscription_id": ten.SubscriptionID, "email": "x@example.com"}

	const badToken = "The access token provided is expired, revoked, malformed, or invalid for other reasons."
	cases := []struct {
		name, token     string
		body            any
		status          int
		error, detail   string
		wwwAuthenticate string
	}{
		{"no token", "", body, 401, "Unauthorized", "Unauthorized", `Bearer realm="polar"`},
		{"unknown token", "nope", body, 401, "Unauthorized", badToken, `Bearer realm="polar"`},
		{"expired token", expired, body, 401, "Unauthorized", badToken, `Bearer realm="polar"`},
		// authlib's challenge, as Polar sends it: realm, scope, error, error_description.
		{"read-only scope", readOnly, body, 403, "insufficient_scope",
			"The request requires higher privileges than provided by the access token. It needs the scope customer_portal:write.",
			`Bearer realm="polar", scope="customer_portal:write", error="insufficient_scope", error_description="The request requires higher privileges than provided by the access token."`},
		{"plain member", memberTok, body, 403, "NotPermitted", "Only owners and billing managers can access billing features.", ""},
		{"seat pricing off", noPricing.Token, map[string]any{"subscription_id": noPricing.SubscriptionID, "email": "x@example.com"}, 403,
			"FeatureNotEnabled", "Seat-based pricing is not enabled for this organization", ""},
		{"another customer's subscription", other.Token, body, 404, "ResourceNotFound", "Subscription not found", ""},
		{"too large", ten.Token, `{"email":"x@example.com","subscription_id":"` + ten.SubscriptionID + `","metadata":{"k":"` + strings.Repeat("a", 70<<10) + `"}}`,
			413, "RequestTooLarge", "Request body exceeds 65536 bytes", ""},
	}
	for _, c := range cases {
		resp := e.Do("POST", seatsPath, c.token, c.body)
		j := resp.JSON(t)
		if resp.Status != c.status || j["error"] != c.error || j["detail"] != c.detail || resp.Header.Get("WWW-Authenticate") != c.wwwAuthenticate {
			t.Errorf("%s: got %d %s WWW-Authenticate %q, want %d %s %q %q", c.name, resp.Status, resp.Body,
				resp.Header.Get("WWW-Authenticate"), c.status, c.error, c.detail, c.wwwAuthenticate)
		}
	}
	if r := e.Do("POST", seatsPath, ten.Token, body); r.Status != 200 {
		t.Fatalf("first seat: %d %s", r.Status, r.Body)
	}
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "y@example.com"})
	if j := r.JSON(t); r.Status != 400 || j["error"] != "SeatNotAvailable" || j["detail"] != "No available seats for "+ten.SubscriptionID {
		t.Errorf("full pool: %d %s", r.Status, r.Body)
	}
	// None of the refused requests left a seat or a message behind.
	var seats int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM seats`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 1 {
		t.Errorf("%d seats in the database, want 1", seats)
	}
}

func TestMemberModel(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{MemberModel: true})
	billing := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "billing@example.com", Role: "billing_manager"}))
	tok := e.Session(ten.CustomerID, billing)
	resp := e.Do("POST", seatsPath, tok, map[string]any{"subscription_id": ten.SubscriptionID, "email": "Dev@Example.com"})
	if resp.Status != 200 {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	seat := resp.JSON(t)
	if seat["customer_id"] != ten.CustomerID || seat["member_id"] == nil || seat["email"] != "Dev@Example.com" {
		t.Errorf("member model seat: %s", resp.Body)
	}
	var memberEmail string
	if err := e.DB.Pool.QueryRow(ctx, `SELECT email FROM members WHERE id = $1`, seat["member_id"]).Scan(&memberEmail); err != nil {
		t.Fatal(err)
	}
	if memberEmail != "Dev@Example.com" {
		t.Errorf("member not created for the email: %q", memberEmail)
	}
	again := e.Do("POST", seatsPath, tok, map[string]any{"subscription_id": ten.SubscriptionID, "email": "dev@example.com"})
	if j := again.JSON(t); again.Status != 400 || j["error"] != "SeatAlreadyAssigned" || j["detail"] != "Seat already assigned to customer Dev@Example.com" {
		t.Errorf("duplicate email with member model: %d %s", again.Status, again.Body)
	}
}

// TestNoOversell is promise 1: 200 concurrent assigns for 20 seats, served
// by two workers, end with exactly 20 seats and 180 refusals.
func TestNoOversell(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: 2, SyncTimeout: 60 * time.Second})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 20})
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID,
				"email": fmt.Sprintf("user%d@example.com", i), "immediate_claim": i%2 == 0})
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 20 || statuses[400] != 180 {
		t.Errorf("statuses %v, want 20×200 and 180×400", statuses)
	}
	var live, used int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats WHERE subscription_id = $1 AND status <> 'revoked'`, ten.SubscriptionID).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT seats_used FROM subscriptions WHERE id = $1`, ten.SubscriptionID).Scan(&used); err != nil {
		t.Fatal(err)
	}
	if live != 20 || used != 20 {
		t.Errorf("%d live seats, seats_used %d; want 20", live, used)
	}
}
