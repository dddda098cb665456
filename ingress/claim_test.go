package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// invitationToken rebuilds the token the mailer would send for a seat's
// current invitation (the test holds the server's keys).
func invitationToken(t *testing.T, e *seatdtest.Env, seatID string) string {
	t.Helper()
	var nonce []byte
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT i.nonce FROM seats s JOIN invitations i ON i.id = s.invitation_id
		WHERE s.id = $1`, seatID).Scan(&nonce); err != nil {
		t.Fatalf("invitation of seat %s: %v", seatID, err)
	}
	return e.Keys.InvitationToken(nonce)
}

func assignPending(t *testing.T, e *seatdtest.Env, ten seatdtest.Tenant, email string) map[string]any {
	t.Helper()
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": email})
	if r.Status != 200 {
		t.Fatalf("assign %s: %d %s", email, r.Status, r.Body)
	}
	return r.JSON(t)
}

const claimPath = "/v1/customer-seats/claim"

func TestClaim(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Pro Plan"})
	seat := assignPending(t, e, ten, "invitee@example.com")
	token := invitationToken(t, e, seat["id"].(string))

	// Reading the invitation changes nothing, however often.
	for i := 0; i < 2; i++ {
		info := e.Do("GET", claimPath+"/"+token, "", nil)
		if info.Status != 200 {
			t.Fatalf("claim info: %d %s", info.Status, info.Body)
		}
		j := info.JSON(t)
		if j["product_name"] != "Pro Plan" || j["organization_name"] != "Acme" || j["customer_email"] != "invitee@example.com" || j["can_claim"] != true {
			t.Errorf("claim info %s", info.Body)
		}
	}
	r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token})
	if r.Status != 200 {
		t.Fatalf("claim: %d %s", r.Status, r.Body)
	}
	var out struct {
		Seat  events.CustomerSeat `json:"seat"`
		Token string              `json:"customer_session_token"`
	}
	r.Decode(t, &out)
	if out.Seat.Status != events.SeatClaimed || out.Seat.ClaimedAt == nil || out.Token == "" {
		t.Fatalf("claimed seat %s", r.Body)
	}
	// The session token works for the invitee.
	sess, err := e.DB.Authenticate(context.Background(), out.Token)
	if err != nil || sess.CustomerID != *out.Seat.CustomerID {
		t.Errorf("claim session: %v %+v", err, sess)
	}
	// The token is dead afterwards, for reading and for claiming.
	if r := e.Do("GET", claimPath+"/"+token, "", nil); r.Status != 404 {
		t.Errorf("info after claim: %d", r.Status)
	}
	again := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token})
	if again.Status != 400 || again.JSON(t)["detail"] != "Invalid or expired invitation token" {
		t.Errorf("second claim: %d %s", again.Status, again.Body)
	}
	for _, bad := range []any{map[string]any{}, map[string]any{"invitation_token": 5}, "nope"} {
		if r := e.Do("POST", claimPath, "", bad); r.Status != 422 {
			t.Errorf("claim body %v: %d", bad, r.Status)
		}
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": "unknown"}); r.Status != 400 {
		t.Errorf("unknown token: %d", r.Status)
	}
}

func TestClaimRace(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: 2})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "race@example.com")
	token := invitationToken(t, e, seat["id"].(string))
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token})
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[400] != 9 {
		t.Errorf("racing claims: %v, want one 200 and nine 400", statuses)
	}
	var sessions int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE customer_id = $1`, seat["customer_id"]).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 1 {
		t.Errorf("%d claim sessions, want 1", sessions)
	}
}

func TestClaimExpired(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{InvitationTTL: 300 * time.Millisecond})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 1})
	seat := assignPending(t, e, ten, "late@example.com")
	token := invitationToken(t, e, seat["id"].(string))
	time.Sleep(400 * time.Millisecond)
	if r := e.Do("GET", claimPath+"/"+token, "", nil); r.Status != 404 {
		t.Errorf("expired info: %d", r.Status)
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}); r.Status != 400 {
		t.Errorf("expired claim: %d %s", r.Status, r.Body)
	}
	// Polar's behaviour by default: an expired pending seat still counts.
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "next@example.com"}); r.Status != 400 {
		t.Errorf("expired seat freed its slot: %d", r.Status)
	}
	// With release, the sweeper revokes it and the slot is free again.
	n, err := e.DB.ReleaseExpired(context.Background(), time.Now(), 100)
	if err != nil || n != 1 {
		t.Fatalf("release expired: %d %v", n, err)
	}
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "next@example.com"}); r.Status != 200 {
		t.Errorf("after release: %d %s", r.Status, r.Body)
	}
}

func TestResend(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "resend@example.com")
	id := seat["id"].(string)
	old := invitationToken(t, e, id)
	r := e.Do("POST", seatsPath+"/"+id+"/resend", ten.Token, nil)
	if r.Status != 200 {
		t.Fatalf("resend: %d %s", r.Status, r.Body)
	}
	fresh := invitationToken(t, e, id)
	if fresh == old {
		t.Fatal("resend kept the old token")
	}
	if r.JSON(t)["invitation_token_expires_at"] == seat["invitation_token_expires_at"] {
		t.Error("resend kept the old expiry")
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": old}); r.Status != 400 {
		t.Errorf("old token after resend: %d", r.Status)
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": fresh}); r.Status != 200 {
		t.Errorf("new token: %d %s", r.Status, r.Body)
	}
	// Resending a claimed seat is refused.
	if r := e.Do("POST", seatsPath+"/"+id+"/resend", ten.Token, nil); r.Status != 400 || r.JSON(t)["detail"] != "Seat is not in pending status" {
		t.Errorf("resend claimed: %d %s", r.Status, r.Body)
	}
	var mails int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invitations WHERE seat_id = $1`, id).Scan(&mails); err != nil {
		t.Fatal(err)
	}
	if mails != 2 {
		t.Errorf("%d invitations, want 2", mails)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 1})
	seat := assignPending(t, e, ten, "gone@example.com")
	id := seat["id"].(string)
	token := invitationToken(t, e, id)
	r := e.Do("DELETE", seatsPath+"/"+id, ten.Token, nil)
	if r.Status != 200 || r.JSON(t)["status"] != "revoked" || r.JSON(t)["revoked_at"] == nil {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	again := e.Do("DELETE", seatsPath+"/"+id, ten.Token, nil)
	if again.Status != 200 || string(again.Body) != string(r.Body) {
		t.Errorf("second revoke changed something: %s vs %s", again.Body, r.Body)
	}
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}); r.Status != 400 {
		t.Errorf("token after revoke: %d", r.Status)
	}
	// The slot is free at once.
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "gone@example.com"}); r.Status != 200 {
		t.Errorf("assign after revoke: %d %s", r.Status, r.Body)
	}
	list := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, ten.Token, nil).JSON(t)
	if list["total_seats"] != 1.0 || list["available_seats"] != 0.0 || len(list["seats"].([]any)) != 2 {
		t.Errorf("list after revoke and reassign: %v", list)
	}
}

func TestListCounts(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 4})
	for i := 0; i < 3; i++ {
		assignPending(t, e, ten, fmt.Sprintf("l%d@example.com", i))
	}
	readOnly := e.Session(ten.CustomerID, "", storage.ScopeRead)
	r := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, readOnly, nil)
	if r.Status != 200 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	var list struct {
		Seats     []events.CustomerSeat `json:"seats"`
		Available int                   `json:"available_seats"`
		Total     int                   `json:"total_seats"`
	}
	r.Decode(t, &list)
	if len(list.Seats) != 3 || list.Available != 1 || list.Total != 4 {
		t.Errorf("list: %d seats, %d available, %d total", len(list.Seats), list.Available, list.Total)
	}
	if r := e.Do("GET", seatsPath, ten.Token, nil); r.Status != 400 { // Polar's BadRequest
		t.Errorf("list without a pool: %d", r.Status)
	}
	noScope := e.Session(ten.CustomerID, "", "other:scope")
	if r := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, noScope, nil); r.Status != 403 {
		t.Errorf("list without read scope: %d", r.Status)
	}
}

// TestCrossCustomerAccess: another customer's pool, seat, request and batch
// answer 404 on every endpoint, exactly like ones that do not exist.
func TestCrossCustomerAccess(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	victim := e.Tenant(seatdtest.TenantOptions{})
	attacker := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, victim, "v@example.com")
	id := seat["id"].(string)
	req := e.Do("POST", seatsPath, victim.Token, map[string]any{"subscription_id": victim.SubscriptionID, "email": "w@example.com"},
		"Prefer", "respond-async")
	batch := e.Do("POST", seatsPath+"/batch", victim.Token, map[string]any{"items": []map[string]any{
		{"subscription_id": victim.SubscriptionID, "email": "x@example.com"}}})
	order := e.Pool("order", victim.CustomerID, "P", 2, "paid")
	checkout := seatdtest.Must(e.DB.CreateCheckout(context.Background(), victim.SubscriptionID, ""))

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", seatsPath + "?subscription_id=" + victim.SubscriptionID, nil},
		{"GET", seatsPath + "?order_id=" + order, nil},
		{"POST", seatsPath, map[string]any{"subscription_id": victim.SubscriptionID, "email": "a@example.com"}},
		{"POST", seatsPath, map[string]any{"order_id": order, "email": "a@example.com"}},
		{"POST", seatsPath, map[string]any{"checkout_id": checkout, "email": "a@example.com"}},
		{"POST", seatsPath + "/" + id + "/resend", nil},
		{"DELETE", seatsPath + "/" + id, nil},
		{"GET", req.Header.Get("Location"), nil},
		{"GET", batch.Header.Get("Location"), nil},
	} {
		r := e.Do(c.method, c.path, attacker.Token, c.body)
		if r.Status != 404 {
			t.Errorf("%s %s as another customer: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	// And the victim's seat is untouched.
	got := seatdtest.Must(e.DB.Seat(context.Background(), id))
	if got.Status != events.SeatPending {
		t.Errorf("victim's seat is %s", got.Status)
	}
}

// TestSeatEvents: assigned, claimed and revoked are each published once per
// change, in commit order per seat, carrying the seat.
func TestSeatEvents(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "ev@example.com")
	id := seat["id"].(string)
	token := invitationToken(t, e, id)
	if r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	e.Do("DELETE", seatsPath+"/"+id, ten.Token, nil)
	e.Do("DELETE", seatsPath+"/"+id, ten.Token, nil) // idempotent: no second event
	instant := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "now@example.com", "immediate_claim": true}).JSON(t)

	ctx := context.Background()
	cons, err := e.JS.OrderedConsumer(ctx, events.SeatEventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []events.SeatEvent
	seatdtest.WaitFor(t, 10*time.Second, "4 seat events", func() bool {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev events.SeatEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if m.Subject() != events.SeatEventSubject(ev.Type) {
				t.Errorf("event %s on subject %s", ev.Type, m.Subject())
			}
			got = append(got, ev)
		}
		return len(got) >= 4
	})
	time.Sleep(100 * time.Millisecond)
	if more, _ := cons.Fetch(10, jetstream.FetchMaxWait(100*time.Millisecond)); more != nil {
		for m := range more.Messages() {
			t.Errorf("unexpected extra event: %s", m.Data())
		}
	}
	want := []struct {
		typ     events.SeatEventType
		seat    string
		status  events.SeatStatus
		version int
	}{
		{events.SeatAssigned, id, events.SeatPending, 1},
		{events.SeatClaimedEvent, id, events.SeatClaimed, 2},
		{events.SeatRevokedEvent, id, events.SeatRevoked, 3},
		{events.SeatClaimedEvent, instant["id"].(string), events.SeatClaimed, 1},
	}
	for i, w := range want {
		if i >= len(got) {
			break
		}
		g := got[i]
		if g.Type != w.typ || g.Data.ID != w.seat || g.Data.Status != w.status || g.Version != w.version {
			t.Errorf("event %d: %s seat %s status %s v%d; want %s %s %s v%d", i, g.Type, g.Data.ID, g.Data.Status, g.Version,
				w.typ, w.seat, w.status, w.version)
		}
	}
}
