package events

import (
	"errors"
	"strings"
	"testing"
)

const otherUUID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

// TestRequestCheckCallers: a request acts for exactly one caller, a
// customer (with perhaps one of its members) or an organization; an
// organization's assign names no checkout, and a claim has no organization.
func TestRequestCheckCallers(t *testing.T) {
	sub := &SeatAssign{SubscriptionID: testUUID, Email: "a@example.com"}
	checkout := &SeatAssign{CheckoutID: testUUID, Email: "a@example.com"}
	hash := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name string
		r    Request
		want string // "" when well formed
	}{
		{"customer assign", Request{Op: OpAssign, CustomerID: testUUID, Assign: sub}, ""},
		{"member assign", Request{Op: OpAssign, CustomerID: testUUID, MemberID: otherUUID, Assign: sub}, ""},
		{"organization assign", Request{Op: OpAssign, OrganizationID: testUUID, Assign: sub}, ""},
		{"organization revoke", Request{Op: OpRevoke, OrganizationID: testUUID, SeatID: otherUUID}, ""},
		{"organization resend", Request{Op: OpResend, OrganizationID: testUUID, SeatID: otherUUID}, ""},
		{"customer checkout", Request{Op: OpAssign, CustomerID: testUUID, Assign: checkout}, ""},
		{"claim", Request{Op: OpClaim, TokenHash: hash}, ""},
		{"no caller", Request{Op: OpAssign, Assign: sub}, "needs customer_id or organization_id"},
		{"no caller revoke", Request{Op: OpRevoke, SeatID: otherUUID}, "needs customer_id or organization_id"},
		{"both callers", Request{Op: OpAssign, CustomerID: testUUID, OrganizationID: otherUUID, Assign: sub}, "organization_id goes without"},
		{"organization with a member", Request{Op: OpAssign, MemberID: testUUID, OrganizationID: otherUUID, Assign: sub}, "organization_id goes without"},
		{"malformed organization", Request{Op: OpAssign, OrganizationID: "acme", Assign: sub}, "organization_id is not a UUID"},
		{"organization checkout", Request{Op: OpAssign, OrganizationID: testUUID, Assign: checkout}, "not a checkout"},
		{"organization claim", Request{Op: OpClaim, OrganizationID: testUUID, TokenHash: hash}, "no organization"},
	} {
		c.r.ID = testUUID
		err := c.r.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if c.want != "" {
			if _, err := c.r.Encode(); err == nil {
				t.Errorf("%s: encoded for publishing", c.name)
			}
		}
	}
}

// TestOrgSeatAssign: the organization API's SeatAssign has exactly one of
// subscription_id or order_id; checkout_id is not a field of it, and is
// ignored like any unknown field. Everything else is the portal's.
func TestOrgSeatAssign(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       string // the 422 message, "" when accepted
	}{
		{"subscription", `{"subscription_id":"` + testUUID + `","email":"a@example.com"}`, ""},
		{"order", `{"order_id":"` + testUUID + `","customer_id":"` + otherUUID + `"}`, ""},
		{"checkout only", `{"checkout_id":"` + testUUID + `","email":"a@example.com"}`, "Exactly one of subscription_id or order_id must be provided"},
		{"checkout beside a subscription", `{"checkout_id":"` + otherUUID + `","subscription_id":"` + testUUID + `","email":"a@example.com"}`, ""},
		{"malformed checkout ignored", `{"checkout_id":12,"subscription_id":"` + testUUID + `","email":"a@example.com"}`, ""},
		{"both", `{"order_id":"` + testUUID + `","subscription_id":"` + testUUID + `","email":"a@example.com"}`, "Exactly one of subscription_id or order_id"},
		{"neither", `{"email":"a@example.com"}`, "Exactly one of subscription_id or order_id"},
		{"no recipient", `{"subscription_id":"` + testUUID + `"}`, "At least one of email, external_customer_id, customer_id, external_member_id, or member_id must be provided"},
		{"bad email", `{"subscription_id":"` + testUUID + `","email":"nope"}`, "valid email"},
	} {
		a, errs := DecodeOrgSeatAssign([]byte(c.body))
		got := ""
		for _, e := range errs {
			got += e.Msg + "; "
		}
		switch {
		case c.want == "" && errs != nil:
			t.Errorf("%s: refused: %s", c.name, got)
		case c.want == "" && a.CheckoutID != "":
			t.Errorf("%s: kept checkout_id %q", c.name, a.CheckoutID)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// The portal's body still takes a checkout.
	if a, errs := DecodeSeatAssign([]byte(`{"checkout_id":"` + testUUID + `","email":"a@example.com"}`)); errs != nil || a.CheckoutID != testUUID {
		t.Errorf("portal checkout: %+v %v", a, errs)
	}
}
