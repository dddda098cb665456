package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
)

// TestValidation is promise 5: each rule answers 422 in the
// HTTPValidationError shape beside Polar's "error": "RequestValidationError",
// naming the field (and, for Polar's SeatAssign validators, with Polar's
// message), and nothing is recorded or published.
func TestValidation(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	sub := ten.SubscriptionID
	bigMeta := map[string]any{}
	for i := 0; i < 11; i++ {
		bigMeta[fmt.Sprintf("k%d", i)] = i
	}
	member := "33333333-3333-4333-8333-333333333333"
	cases := []struct {
		name string
		body any
		loc  string // the loc of the first error, joined with "."
		msg  string // its msg, when it is Polar's
	}{
		{"malformed json", `{"subscription_id":`, "body", ""},
		{"array body", `[1,2]`, "body", ""},
		{"string body", `"hello"`, "body", ""},
		{"null body", `null`, "body", ""},
		{"empty body", ``, "body", ""},
		{"no container", map[string]any{"email": "a@example.com"}, "body",
			"Value error, Exactly one of subscription_id, order_id, or checkout_id must be provided"},
		{"two containers", map[string]any{"subscription_id": sub, "order_id": sub, "email": "a@example.com"}, "body",
			"Value error, Exactly one of subscription_id, order_id, or checkout_id must be provided"},
		{"no recipient", map[string]any{"subscription_id": sub}, "body",
			"Value error, At least one of email, external_customer_id, customer_id, external_member_id, or member_id must be provided"},
		{"two recipients", map[string]any{"subscription_id": sub, "email": "a@example.com", "customer_id": sub}, "body",
			"Value error, Exactly one of email, external_customer_id, or customer_id must be provided"},
		{"two customer ids", map[string]any{"subscription_id": sub, "external_customer_id": "x", "customer_id": sub}, "body",
			"Value error, Exactly one of email, external_customer_id, or customer_id must be provided"},
		{"customer and member ids", map[string]any{"subscription_id": sub, "customer_id": sub, "member_id": member}, "body",
			"Value error, Cannot combine external_customer_id/customer_id with external_member_id/member_id"},
		{"external customer and member ids", map[string]any{"subscription_id": sub, "external_customer_id": "c", "external_member_id": "m"}, "body",
			"Value error, Cannot combine external_customer_id/customer_id with external_member_id/member_id"},
		{"both member ids", map[string]any{"subscription_id": sub, "member_id": member, "external_member_id": "m"}, "body",
			"Value error, Cannot provide both external_member_id and member_id"},
		{"member id with email", map[string]any{"subscription_id": sub, "member_id": member, "email": "a@example.com"}, "body",
			"Value error, Cannot combine member_id with email"},
		{"bad member uuid", map[string]any{"subscription_id": sub, "member_id": "m-1"}, "body.member_id", "Input should be a valid UUID"},
		{"empty external member id", map[string]any{"subscription_id": sub, "external_member_id": ""}, "body.external_member_id",
			"String should have at least 1 character"},
		{"external member id not a string", map[string]any{"subscription_id": sub, "external_member_id": 7}, "body.external_member_id",
			"Input should be a valid string"},
		{"bad subscription uuid", map[string]any{"subscription_id": "not-a-uuid", "email": "a@example.com"}, "body.subscription_id", ""},
		{"bad order uuid", map[string]any{"order_id": "1234", "email": "a@example.com"}, "body.order_id", ""},
		{"bad checkout uuid", map[string]any{"checkout_id": 12, "email": "a@example.com"}, "body.checkout_id", ""},
		{"bad customer uuid", map[string]any{"subscription_id": sub, "customer_id": "x"}, "body.customer_id", ""},
		{"bad email", map[string]any{"subscription_id": sub, "email": "not-an-email"}, "body.email", ""},
		{"email with name", map[string]any{"subscription_id": sub, "email": "Bob <bob@example.com>"}, "body.email", ""},
		{"email without dot", map[string]any{"subscription_id": sub, "email": "bob@localhost"}, "body.email", ""},
		{"email not a string", map[string]any{"subscription_id": sub, "email": 5}, "body.email", ""},
		{"empty external id", map[string]any{"subscription_id": sub, "external_customer_id": ""}, "body.external_customer_id", ""},
		{"metadata not an object", map[string]any{"subscription_id": sub, "email": "a@example.com", "metadata": []int{1}}, "body.metadata", ""},
		{"metadata 11 keys", map[string]any{"subscription_id": sub, "email": "a@example.com", "metadata": bigMeta}, "body.metadata", ""},
		{"metadata over 1KB", map[string]any{"subscription_id": sub, "email": "a@example.com", "metadata": map[string]any{"k": strings.Repeat("x", 1100)}}, "body.metadata", ""},
		{"immediate_claim not bool", map[string]any{"subscription_id": sub, "email": "a@example.com", "immediate_claim": "yes"}, "body.immediate_claim", ""},
	}
	for _, c := range cases {
		resp := e.Do("POST", seatsPath, ten.Token, c.body)
		if resp.Status != 422 {
			t.Errorf("%s: status %d, want 422: %s", c.name, resp.Status, resp.Body)
			continue
		}
		var ve struct {
			Error  string              `json:"error"`
			Detail []events.FieldError `json:"detail"`
		}
		if err := json.Unmarshal(resp.Body, &ve); err != nil || len(ve.Detail) == 0 || ve.Error != "RequestValidationError" {
			t.Errorf("%s: not a RequestValidationError with an HTTPValidationError detail: %s", c.name, resp.Body)
			continue
		}
		d := ve.Detail[0]
		var loc []string
		for _, l := range d.Loc {
			loc = append(loc, fmt.Sprint(l))
		}
		if strings.Join(loc, ".") != c.loc || d.Msg == "" || d.Type == "" || (c.msg != "" && d.Msg != c.msg) {
			t.Errorf("%s: detail %+v, want loc %s with msg %q and a type", c.name, d, c.loc, c.msg)
		}
	}
	// Unknown fields are ignored; a valid body with extras is accepted.
	ok := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": sub, "email": "ok@example.com", "colour": "blue"})
	if ok.Status != 200 {
		t.Errorf("unknown field refused: %d %s", ok.Status, ok.Body)
	}
	var requests, seats int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests`).Scan(&requests); err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if requests != 1 || seats != 1 {
		t.Errorf("after %d invalid requests: %d ledger rows and %d seats, want 1 and 1", len(cases), requests, seats)
	}
	info, err := seatdtest.Must(e.JS.Stream(context.Background(), events.RequestsStream)).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 {
		t.Errorf("%d messages were published, want 1", info.State.LastSeq)
	}
}
