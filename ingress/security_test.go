package ingress_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestEveryRoleOnEveryEndpoint follows Polar: every member role may read
// (list seats, poll requests and batches); only the customer itself and
// owner or billing_manager members may write (assign, batch, resend,
// revoke). A plain member's write is 403 with Polar's message and changes
// nothing.
func TestEveryRoleOnEveryEndpoint(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 50})
	tokens := map[string]string{"customer": ten.Token}
	for _, role := range []string{"owner", "billing_manager", "member"} {
		m := seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: role + "@acme.example", Role: role}))
		tokens[role] = e.Session(ten.CustomerID, m)
	}
	async := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "polled@example.com"},
		"Prefer", "respond-async")
	batch := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": []map[string]any{
		{"subscription_id": ten.SubscriptionID, "email": "batched@example.com"}}})
	if async.Status != 202 || batch.Status != 202 {
		t.Fatalf("setup: %d %d", async.Status, batch.Status)
	}
	for _, role := range []string{"customer", "owner", "billing_manager", "member"} {
		tok := tokens[role]
		for _, p := range []string{seatsPath + "?subscription_id=" + ten.SubscriptionID, async.Header.Get("Location"), batch.Header.Get("Location")} {
			if r := e.Do("GET", p, tok, nil); r.Status != 200 {
				t.Errorf("%s GET %s: %d %s", role, p, r.Status, r.Body)
			}
		}
		seat := assignPending(t, e, ten, "target-"+role+"@example.com")
		id := seat["id"].(string)
		writes := []struct {
			name, method, path string
			body               any
			ok                 int
		}{
			{"assign", "POST", seatsPath, map[string]any{"subscription_id": ten.SubscriptionID, "email": "by-" + role + "@example.com"}, 200},
			{"batch", "POST", seatsPath + "/batch", map[string]any{"items": []any{map[string]any{"subscription_id": ten.SubscriptionID, "email": "batch-by-" + role + "@example.com"}}}, 202},
			{"resend", "POST", seatsPath + "/" + id + "/resend", nil, 200},
			{"revoke", "DELETE", seatsPath + "/" + id, nil, 200},
		}
		for _, w := range writes {
			r := e.Do(w.method, w.path, tok, w.body)
			if role == "member" {
				if r.Status != 403 || r.JSON(t)["detail"] != "Only owners and billing managers can access billing features." {
					t.Errorf("member %s: %d %s, want Polar's 403", w.name, r.Status, r.Body)
				}
				continue
			}
			if r.Status != w.ok {
				t.Errorf("%s %s: %d %s", role, w.name, r.Status, r.Body)
			}
		}
		if role == "member" {
			if got := seatdtest.Must(e.DB.Seat(ctx, id)); got.Status != "pending" {
				t.Errorf("a member's refused revoke left the seat %s", got.Status)
			}
			var n int
			if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM seats WHERE email LIKE '%by-member@example.com' OR customer_id IN
				(SELECT id FROM customers WHERE email LIKE '%by-member@example.com')`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("a member's refused assigns made %d seats", n)
			}
		}
	}
}

// TestClaimReplayAfterRevokeHandsOutNoCredential: revoking a claimed seat
// ends the session its claim created, and replaying the claim with its
// Idempotency-Key gives no working token back.
func TestClaimReplayAfterRevokeHandsOutNoCredential(t *testing.T) {
	t.Parallel()
	for _, memberModel := range []bool{false, true} {
		t.Run(fmt.Sprintf("member model %v", memberModel), func(t *testing.T) {
			t.Parallel()
			e := seatdtest.New(t, seatdtest.Options{})
			ten := e.Tenant(seatdtest.TenantOptions{MemberModel: memberModel})
			seat := assignPending(t, e, ten, "claimer@example.com")
			token := invitationToken(t, e, seat["id"].(string))
			claim := func() seatdtest.Response {
				return e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}, "Idempotency-Key", "claim-once")
			}
			first := claim()
			if first.Status != 200 {
				t.Fatalf("claim: %d %s", first.Status, first.Body)
			}
			session, _ := first.JSON(t)["customer_session_token"].(string)
			probe := seatsPath + "/requests/00000000-0000-4000-8000-000000000000" // 404 when authenticated, 401 when not
			if r := e.Do("GET", probe, session, nil); r.Status != 404 {
				t.Fatalf("fresh claim session: %d %s", r.Status, r.Body)
			}
			if again := claim(); again.Status != 200 || again.JSON(t)["customer_session_token"] != session {
				t.Fatalf("replay while the seat lives: %d %s", again.Status, again.Body)
			}
			if r := e.Do("DELETE", seatsPath+"/"+seat["id"].(string), ten.Token, nil); r.Status != 200 {
				t.Fatalf("revoke: %d %s", r.Status, r.Body)
			}
			// An ingress trusts a session it has looked up for at most a
			// second (the README's promise); then the revoked seat's session
			// is refused.
			storagetest.Eventually(t, 2*time.Second, "the claim's session to stop working after the seat was revoked", func() error {
				if r := e.Do("GET", probe, session, nil); r.Status != 401 {
					return fmt.Errorf("it still answers %d", r.Status)
				}
				return nil
			})
			replay := claim()
			if replay.Status == 200 || strings.Contains(string(replay.Body), "customer_session_token") {
				t.Errorf("replay after revoke: %d %s", replay.Status, replay.Body)
			}
			if replay.Status != 400 || replay.JSON(t)["error"] != "InvalidInvitationToken" {
				t.Errorf("replay after revoke: %d %s, want 400 InvalidInvitationToken", replay.Status, replay.Body)
			}
		})
	}
}

// TestClaimIsNeverAsync: the claimant has no session to poll with, so a
// claim is answered with its outcome even when it asks for async.
func TestClaimIsNeverAsync(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	seat := assignPending(t, e, ten, "async-claimer@example.com")
	token := invitationToken(t, e, seat["id"].(string))
	r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}, "Prefer", "respond-async")
	if r.Status != 200 || r.JSON(t)["customer_session_token"] == nil {
		t.Fatalf("async claim: %d %s (Location %q)", r.Status, r.Body, r.Header.Get("Location"))
	}
}

// TestClaimWithoutWorkerIsNot202: when the worker does not answer in time,
// a claim says to retry with its key (503 + Retry-After), never hands out
// a Location the claimant cannot read; the retry collects the outcome.
func TestClaimWithoutWorkerIsNot202(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1, SyncTimeout: 300 * time.Millisecond})
	ten := e.Tenant(seatdtest.TenantOptions{})
	// Assign without a worker: write the seat by applying the request here.
	stop := e.StartWorker()
	seat := assignPending(t, e, ten, "slow-claimer@example.com")
	stop()
	token := invitationToken(t, e, seat["id"].(string))
	r := e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}, "Idempotency-Key", "k1")
	if r.Status != 503 || r.Header.Get("Retry-After") == "" || r.Header.Get("Location") != "" {
		t.Fatalf("claim with no worker: %d %s %v", r.Status, r.Body, r.Header)
	}
	e.StartWorker()
	var got seatdtest.Response
	seatdtest.WaitFor(t, 10*time.Second, "claim outcome", func() bool {
		got = e.Do("POST", claimPath, "", map[string]any{"invitation_token": token}, "Idempotency-Key", "k1")
		return got.Status == 200
	})
	if got.JSON(t)["customer_session_token"] == nil {
		t.Errorf("retry with the key: %s", got.Body)
	}
}

// TestAuthorizationHeaderAndChallenge: the scheme is case-insensitive, and
// every 401 carries Polar's challenge.
func TestAuthorizationHeaderAndChallenge(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	list := seatsPath + "?subscription_id=" + ten.SubscriptionID
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		if r := e.Do("GET", list, "", nil, "Authorization", scheme+" "+ten.Token); r.Status != 200 {
			t.Errorf("scheme %q: %d %s", scheme, r.Status, r.Body)
		}
	}
	for name, h := range map[string]string{"none": "", "unknown token": "Bearer nope", "basic": "Basic dXNlcjpwYXNz", "empty bearer": "Bearer "} {
		var hdr []string
		if h != "" {
			hdr = []string{"Authorization", h}
		}
		for _, call := range []struct{ method, path string }{{"GET", list}, {"POST", seatsPath}, {"DELETE", seatsPath + "/00000000-0000-4000-8000-000000000000"}} {
			r := e.Do(call.method, call.path, "", `{}`, hdr...)
			if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="polar"` {
				t.Errorf("%s, %s %s: %d, WWW-Authenticate %q", name, call.method, call.path, r.Status, r.Header.Get("WWW-Authenticate"))
			}
		}
	}
}

// TestWrongMethodIs405: a known path with the wrong method answers 405
// (MethodNotAllowed) and names the allowed methods, token or not; an
// unknown API path asks for a token first (401), then is 404.
func TestWrongMethodIs405(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", seatsPath, "GET, HEAD, POST"},
		{"PATCH", seatsPath + "/00000000-0000-4000-8000-000000000000", "DELETE"},
		{"GET", seatsPath + "/batch", "POST, DELETE"}, // DELETE: "batch" as a seat id
		// DELETE: "claim" as a seat id of the organization API, as in Polar.
		{"GET", "/v1/customer-seats/claim", "POST, DELETE"},
		{"PATCH", "/v1/customer-seats/00000000-0000-4000-8000-000000000000", "DELETE"},
		{"POST", "/v1/customer-seats/claim/abc", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.Do(c.method, c.path, "", nil)
		if r.Status != 405 || r.Header.Get("Allow") != c.allow || r.JSON(t)["error"] != "MethodNotAllowed" {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", c.method, c.path, r.Status, r.Header.Get("Allow"), r.Body, c.allow)
		}
	}
	if r := e.Do("PUT", "/v1/nothing-here", "", nil); r.Status != 401 || r.JSON(t)["error"] != "Unauthorized" {
		t.Errorf("unknown path without a token: %d %s", r.Status, r.Body)
	}
	if r := e.Do("PUT", "/v1/nothing-here", ten.Token, nil); r.Status != 404 || r.JSON(t)["error"] != "ResourceNotFound" {
		t.Errorf("unknown path: %d %s", r.Status, r.Body)
	}
}

// TestTricklingBodyIs408: a body that does not arrive within the body
// timeout is answered 408, promptly.
func TestTricklingBodyIs408(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{BodyTimeout: 300 * time.Millisecond})
	ten := e.Tenant(seatdtest.TenantOptions{})
	conn, err := net.Dial("tcp", e.HTTP.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	body := `{"subscription_id":"` + ten.SubscriptionID + `","email":"slow@example.com"}`
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		seatsPath, ten.Token, len(body)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() { // one byte every 100ms: 6 s for the whole body
		for i := 0; i < len(body); i++ {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer: %v after %s", err, time.Since(start))
	}
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 408") || time.Since(start) > 3*time.Second {
		t.Errorf("after %s: %q", time.Since(start), buf[:n])
	}
	if e.SeatCount() != 0 {
		t.Error("a timed-out request made a seat")
	}
}

// TestIdempotencyKeyScopeIsTheAccount: one key names one operation of one
// account, across endpoints and across the account's sessions and members.
func TestIdempotencyKeyScopeIsTheAccount(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ctx := context.Background()
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 20})
	item := map[string]any{"subscription_id": ten.SubscriptionID, "email": "keyed@example.com"}
	if r := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": []any{item}}, "Idempotency-Key", "k-batch"); r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", seatsPath, ten.Token, item, "Idempotency-Key", "k-batch"); r.Status != 409 {
		t.Errorf("single assign with a batch's key: %d %s, want 409", r.Status, r.Body)
	}
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "single@example.com"}, "Idempotency-Key", "k-single"); r.Status != 200 {
		t.Fatalf("assign: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": []any{item}}, "Idempotency-Key", "k-single"); r.Status != 409 {
		t.Errorf("batch with a single assign's key: %d %s, want 409", r.Status, r.Body)
	}
	// Another session of the same account (an owner member) replays.
	owner := e.Session(ten.CustomerID, seatdtest.Must(e.DB.CreateMember(ctx, storage.MemberSpec{CustomerID: ten.CustomerID, Email: "o@acme.example", Role: "owner"})))
	if r := e.Do("POST", seatsPath, owner, map[string]any{"subscription_id": ten.SubscriptionID, "email": "single@example.com"}, "Idempotency-Key", "k-single"); r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("same key from another session of the account: %d %s", r.Status, r.Body)
	}
	// Another account has its own keys.
	other := e.Tenant(seatdtest.TenantOptions{})
	if r := e.Do("POST", seatsPath, other.Token, map[string]any{"subscription_id": other.SubscriptionID, "email": "x@example.com"}, "Idempotency-Key", "k-batch"); r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another account's key: %d %s", r.Status, r.Body)
	}
	var seats int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM seats WHERE subscription_id = $1`, ten.SubscriptionID).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 2 {
		t.Errorf("%d seats, want 2 (the batch's and the single one)", seats)
	}
}

// TestLookupsReadsAndBadTokensAreLimited: claim lookups per client
// address, reads per session, bad bearer tokens per client address.
func TestLookupsReadsAndBadTokensAreLimited(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{RateLimit: 5, RateBurst: 10, AuthFailLimit: 1, AuthFailBurst: 5})
	ten := e.Tenant(seatdtest.TenantOptions{})
	count := func(n int, do func() seatdtest.Response) (ok, limited int) {
		for i := 0; i < n; i++ {
			r := do()
			if r.Status == 429 {
				limited++
				if r.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			} else {
				ok++
			}
		}
		return
	}
	if ok, limited := count(100, func() seatdtest.Response { return e.Do("GET", claimPath+"/guess", "", nil) }); limited == 0 || ok > 15 {
		t.Errorf("claim lookups: %d answered, %d limited", ok, limited)
	}
	list := seatsPath + "?subscription_id=" + ten.SubscriptionID
	if ok, limited := count(50, func() seatdtest.Response { return e.Do("GET", list, ten.Token, nil) }); limited == 0 || ok > 15 {
		t.Errorf("reads: %d answered, %d limited", ok, limited)
	}
	// Writes have their own bucket: polling does not starve them.
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "w@example.com"}); r.Status != 200 {
		t.Errorf("write after reads were limited: %d %s", r.Status, r.Body)
	}
	if ok, limited := count(30, func() seatdtest.Response { return e.Do("GET", list, "wrong-token", nil) }); limited == 0 || ok > 7 {
		t.Errorf("bad tokens: %d answered, %d limited", ok, limited)
	}
}

// TestAddressesAreOneMailbox: spellings of one mailbox get one seat per
// pool, and what cannot be an address is refused.
func TestAddressesAreOneMailbox(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	for _, memberModel := range []bool{false, true} {
		ten := e.Tenant(seatdtest.TenantOptions{Seats: 10, MemberModel: memberModel})
		assign := func(email string) seatdtest.Response {
			return e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": email})
		}
		first := assign("user@bücher.example")
		if first.Status != 200 {
			t.Fatalf("member model %v: %d %s", memberModel, first.Status, first.Body)
		}
		// customer_email is the occupant's address in both models (Polar's:
		// the seat's email, else its member's, else its customer's); with
		// the member model the seat's email is the member's too.
		fields := []string{"customer_email"}
		if memberModel {
			fields = append(fields, "email")
		}
		for _, field := range fields {
			if got := first.JSON(t)[field]; got != "user@bücher.example" {
				t.Errorf("member model %v: %s displayed as %v, want what was typed", memberModel, field, got)
			}
		}
		for _, same := range []string{"user@xn--bcher-kva.example", "USER@Bücher.Example", " user@bücher.example "} {
			if r := assign(same); r.Status != 400 || r.JSON(t)["error"] != "SeatAlreadyAssigned" {
				t.Errorf("member model %v: %q got %d %s, want SeatAlreadyAssigned", memberModel, same, r.Status, r.Body)
			}
		}
		if r := assign(" spaced@x.example "); r.Status != 200 {
			t.Fatalf("spaced: %d %s", r.Status, r.Body)
		}
		if r := assign("spaced@x.example"); r.Status != 400 {
			t.Errorf("member model %v: the same address without spaces got %d %s", memberModel, r.Status, r.Body)
		}
		for _, bad := range []string{"user@x.example\r\nBcc: e@x.example", "user@[1.2.3.4]", strings.Repeat("a", 65) + "@x.example", "us\xffer@x.example"} {
			if r := assign(bad); r.Status != 422 {
				t.Errorf("%q: %d %s", bad, r.Status, r.Body)
			}
		}
		var live int
		if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats WHERE subscription_id = $1 AND status <> 'revoked'`, ten.SubscriptionID).Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live != 2 {
			t.Errorf("member model %v: %d live seats, want 2", memberModel, live)
		}
	}
	var customers int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM customers WHERE email_key = 'user@xn--bcher-kva.example'`).Scan(&customers); err != nil {
		t.Fatal(err)
	}
	if customers != 1 {
		t.Errorf("%d customers for one mailbox in one organization, want 1", customers)
	}
}
