package ingress_test

import (
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
