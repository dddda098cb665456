package ingress_test

import (
	"context"
	"strings"
	"testing"

	"github.com/seatd/seatd/cmd/seatdtest"
)

// TestListAndPathsAnswerAsPolar: the list endpoint and the seat paths
// answer where the spec is silent as Polar's clients expect
// (../shared/spec/polar-api-facts.md §2): neither id is 400, both means the
// subscription, a malformed id is 422, disabled seat pricing is 403 after
// the lookup (someone else's pool stays 404), and an unset seat_metadata
// reads {}.
func TestListAndPathsAnswerAsPolar(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 2})
	off := e.Tenant(seatdtest.TenantOptions{NoPricing: true})
	other := e.Tenant(seatdtest.TenantOptions{})

	seat := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "x@example.com"})
	if seat.Status != 200 || !strings.Contains(string(seat.Body), `"seat_metadata":{}`) {
		t.Fatalf("assign without metadata: %d %s, want seat_metadata {}", seat.Status, seat.Body)
	}

	for _, tc := range []struct {
		name, path, token string
		status            int
		want              string
	}{
		{"neither id", seatsPath, ten.Token, 400, `"detail":"Either subscription_id or order_id must be provided"`},
		{"malformed subscription id", seatsPath + "?subscription_id=nope", ten.Token, 422, `"loc":["query","subscription_id"]`},
		{"malformed order id", seatsPath + "?order_id=12", ten.Token, 422, `"loc":["query","order_id"]`},
		{"both ids: the subscription wins", seatsPath + "?subscription_id=" + ten.SubscriptionID + "&order_id=" + other.SubscriptionID, ten.Token, 200, `"total_seats":2`},
		{"seat pricing disabled", seatsPath + "?subscription_id=" + off.SubscriptionID, off.Token, 403, `Seat-based pricing is not enabled for this organization`},
		{"someone else's pool, pricing disabled", seatsPath + "?subscription_id=" + off.SubscriptionID, ten.Token, 404, `not found`},
		{"listed seats carry {} metadata", seatsPath + "?subscription_id=" + ten.SubscriptionID, ten.Token, 200, `"seat_metadata":{}`},
	} {
		r := e.Do("GET", tc.path, tc.token, nil)
		if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, r.Status, r.Body, tc.status, tc.want)
		}
	}
	for _, method := range []string{"DELETE", "POST"} {
		path := seatsPath + "/not-a-uuid"
		if method == "POST" {
			path += "/resend"
		}
		r := e.Do(method, path, ten.Token, nil)
		if r.Status != 422 || !strings.Contains(string(r.Body), `"loc":["path","id"]`) {
			t.Errorf("%s %s: %d %s, want 422 naming the path id", method, path, r.Status, r.Body)
		}
	}
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats, want the one assigned", n)
	}
}

// TestSeatPricingOffRefusesSeatWrites: in an organization whose seat-based
// pricing was turned off after seats were assigned, resend, revoke, claim
// info and claim answer Polar's 403 FeatureNotEnabled, on the portal and on
// the organization API, after the 404 for someone else's seat, and change
// nothing: no seat, invitation, session or outbox row. As Polar's
// revoke_seat, the portal answers an already revoked seat unchanged before
// the check; Polar's organization endpoint checks first
// (../shared/spec/polar-api-facts.md §2, §3).
func TestSeatPricingOffRefusesSeatWrites(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{})
	other := e.Tenant(seatdtest.TenantOptions{})
	orgTok, otherOrgTok := e.OrgToken(ten.OrgID), e.OrgToken(other.OrgID)

	pending := assignPending(t, e, ten, "pending@example.com")["id"].(string)
	token := invitationToken(t, e, pending)
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "claimed@example.com", "immediate_claim": true})
	if r.Status != 200 {
		t.Fatalf("immediate claim: %d %s", r.Status, r.Body)
	}
	claimed := r.JSON(t)["id"].(string)
	revoked := assignPending(t, e, ten, "revoked@example.com")["id"].(string)
	if r := e.Do("DELETE", seatsPath+"/"+revoked, ten.Token, nil); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	revokedSeat := string(e.Do("DELETE", seatsPath+"/"+revoked, ten.Token, nil).Body)

	e.SetSeatPricing(ten.OrgID, false)
	state := func() string {
		t.Helper()
		var s string
		if err := e.DB.Pool.QueryRow(ctx, `SELECT concat_ws(' | ',
				(SELECT json_agg(s ORDER BY s.id)::text FROM seats s),
				(SELECT count(*) FROM invitations), (SELECT count(*) FROM sessions),
				(SELECT last_value FROM outbox_id_seq))`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := state()

	const off = "Seat-based pricing is not enabled for this organization"
	for _, c := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		error, detail             string
	}{
		{"portal resend", "POST", seatsPath + "/" + pending + "/resend", ten.Token, nil, 403, "FeatureNotEnabled", off},
		{"portal resend of a claimed seat: pricing before pending", "POST", seatsPath + "/" + claimed + "/resend", ten.Token, nil, 403, "FeatureNotEnabled", off},
		{"portal revoke of a pending seat", "DELETE", seatsPath + "/" + pending, ten.Token, nil, 403, "FeatureNotEnabled", off},
		{"portal revoke of a claimed seat", "DELETE", seatsPath + "/" + claimed, ten.Token, nil, 403, "FeatureNotEnabled", off},
		{"org resend", "POST", orgPath + "/" + pending + "/resend", orgTok, nil, 403, "FeatureNotEnabled", off},
		{"org revoke of a pending seat", "DELETE", orgPath + "/" + pending, orgTok, nil, 403, "FeatureNotEnabled", off},
		{"org revoke of a claimed seat", "DELETE", orgPath + "/" + claimed, orgTok, nil, 403, "FeatureNotEnabled", off},
		{"org revoke of a revoked seat: the endpoint checks first", "DELETE", orgPath + "/" + revoked, orgTok, nil, 403, "FeatureNotEnabled", off},
		{"someone else's seat: 404 first (portal)", "DELETE", seatsPath + "/" + pending, other.Token, nil, 404, "ResourceNotFound", "Seat not found"},
		{"someone else's seat: 404 first (org resend)", "POST", orgPath + "/" + pending + "/resend", otherOrgTok, nil, 404, "ResourceNotFound", "Seat not found"},
		{"claim info", "GET", claimPath + "/" + token, "", nil, 403, "FeatureNotEnabled", off},
		{"claim", "POST", claimPath, "", map[string]any{"invitation_token": token}, 403, "FeatureNotEnabled", off},
		{"claim of an unknown token: 400 first", "POST", claimPath, "", map[string]any{"invitation_token": "nope"}, 400, "InvalidInvitationToken", "Invalid or expired invitation token"},
	} {
		wantError(t, c.name, e.Do(c.method, c.path, c.token, c.body), c.status, c.error, c.detail)
	}
	// Polar's revoke_seat answers a revoked seat as it is before checking.
	if r := e.Do("DELETE", seatsPath+"/"+revoked, ten.Token, nil); r.Status != 200 || string(r.Body) != revokedSeat {
		t.Errorf("portal revoke of a revoked seat: %d %s, want 200 %s", r.Status, r.Body, revokedSeat)
	}
	if after := state(); after != before {
		t.Errorf("refusals changed the database:\n before %s\n after  %s", before, after)
	}

	// Turned back on, the same invitation is claimed and the seats revoked.
	e.SetSeatPricing(ten.OrgID, true)
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}); r.Status != 200 {
		t.Errorf("claim with pricing back on: %d %s", r.Status, r.Body)
	}
	if r := e.Do("DELETE", orgPath+"/"+claimed, orgTok, nil); r.Status != 200 {
		t.Errorf("revoke with pricing back on: %d %s", r.Status, r.Body)
	}
}
