package ingress_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
)

func poll(t *testing.T, e *seatdtest.Env, token, location string) map[string]any {
	t.Helper()
	var body map[string]any
	seatdtest.WaitFor(t, 10*time.Second, "request "+location+" done", func() bool {
		r := e.Do("GET", location, token, nil)
		if r.Status != 200 {
			t.Fatalf("poll %s: %d %s", location, r.Status, r.Body)
		}
		body = r.JSON(t)
		return body["status"] != "queued"
	})
	return body
}

func TestAsyncSubmitAndPoll(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 1})
	other := e.Tenant(seatdtest.TenantOptions{})

	submit := func(body map[string]any) (string, string) {
		t.Helper()
		r := e.Do("POST", seatsPath, ten.Token, body, "Prefer", "respond-async")
		if r.Status != http.StatusAccepted {
			t.Fatalf("async submit: %d %s", r.Status, r.Body)
		}
		j := r.JSON(t)
		loc := r.Header.Get("Location")
		if j["status"] != "queued" || loc != seatsPath+"/requests/"+j["request_id"].(string) {
			t.Fatalf("async answer %s, Location %q", r.Body, loc)
		}
		return j["request_id"].(string), loc
	}

	id, loc := submit(map[string]any{"subscription_id": ten.SubscriptionID, "email": "async@example.com"})
	done := poll(t, e, ten.Token, loc)
	seat, _ := done["seat"].(map[string]any)
	if done["status"] != "succeeded" || done["request_id"] != id || seat["status"] != "pending" || done["error"] != nil {
		t.Errorf("succeeded poll: %v", done)
	}
	// Another customer cannot see it.
	if r := e.Do("GET", loc, other.Token, nil); r.Status != 404 {
		t.Errorf("other customer's poll: %d %s", r.Status, r.Body)
	}

	// Each failure kind is reported with its status, Polar's error name and
	// message, as a synchronous call would answer it.
	failures := []struct {
		body          map[string]any
		status        float64
		error, detail string
	}{
		{map[string]any{"subscription_id": ten.SubscriptionID, "email": "full@example.com"}, 400, "SeatNotAvailable", "No available seats for " + ten.SubscriptionID},
		{map[string]any{"subscription_id": other.SubscriptionID, "email": "x@example.com"}, 404, "ResourceNotFound", "Subscription not found"},
	}
	for _, f := range failures {
		_, loc := submit(f.body)
		got := poll(t, e, ten.Token, loc)
		errObj, _ := got["error"].(map[string]any)
		if got["status"] != "failed" || got["seat"] != nil || errObj["status"] != f.status || errObj["error"] != f.error || errObj["detail"] != f.detail {
			t.Errorf("failure poll for %v: %v", f.body, got)
		}
	}
	if r := e.Do("GET", seatsPath+"/requests/not-a-uuid", ten.Token, nil); r.Status != 404 {
		t.Errorf("malformed request id: %d", r.Status)
	}
}

func TestSyncTimeoutAnswers202(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1, SyncTimeout: 200 * time.Millisecond})
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "slow@example.com"})
	if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" {
		t.Fatalf("no worker: %d %s", r.Status, r.Body)
	}
	// Nothing is lost because the caller stopped waiting: a worker that
	// starts later applies it.
	e.StartWorker()
	got := poll(t, e, ten.Token, r.Header.Get("Location"))
	if got["status"] != "succeeded" {
		t.Errorf("after the worker started: %v", got)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 3})
	other := e.Tenant(seatdtest.TenantOptions{})
	body := map[string]any{"subscription_id": ten.SubscriptionID, "email": "idem@example.com"}

	first := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "key-1")
	if first.Status != 200 {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	again := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "key-1")
	if again.Status != 200 || again.JSON(t)["id"] != first.JSON(t)["id"] || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: %d %s", again.Status, again.Body)
	}
	// A refused request replays its refusal with the same status code.
	dup := map[string]any{"subscription_id": ten.SubscriptionID, "email": "idem@example.com"}
	r1 := e.Do("POST", seatsPath, ten.Token, dup, "Idempotency-Key", "key-2")
	r2 := e.Do("POST", seatsPath, ten.Token, dup, "Idempotency-Key", "key-2")
	if r1.Status != 400 || r2.Status != 400 || string(r1.Body) != string(r2.Body) {
		t.Errorf("failed replay: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
	}
	// Same key, different body: 409.
	conflict := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "else@example.com"},
		"Idempotency-Key", "key-1")
	if conflict.Status != 409 || conflict.JSON(t)["error"] != "IdempotencyConflict" {
		t.Errorf("key reuse: %d %s", conflict.Status, conflict.Body)
	}
	// Keys are per caller: another customer's key-1 is a new request.
	o := e.Do("POST", seatsPath, other.Token, map[string]any{"subscription_id": other.SubscriptionID, "email": "idem@example.com"},
		"Idempotency-Key", "key-1")
	if o.Status != 200 || o.JSON(t)["id"] == first.JSON(t)["id"] {
		t.Errorf("other customer's key: %d %s", o.Status, o.Body)
	}
	// Bad keys are refused.
	for _, k := range []string{"", strings.Repeat("k", 256), "ключ"} {
		if r := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", k); r.Status != 422 {
			t.Errorf("key %q: %d", k, r.Status)
		}
	}
	var seats int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats WHERE subscription_id = $1`, ten.SubscriptionID).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 1 {
		t.Errorf("%d seats, want 1", seats)
	}
}

// TestIdempotencyInFlight: retries racing the first call, while it is still
// queued, all end with the one seat.
func TestIdempotencyInFlight(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1, SyncTimeout: 5 * time.Second})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 3})
	body := map[string]any{"subscription_id": ten.SubscriptionID, "email": "inflight@example.com"}
	var wg sync.WaitGroup
	ids := make([]string, 5)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "race")
			if r.Status != 200 {
				t.Errorf("call %d: %d %s", i, r.Status, r.Body)
				return
			}
			ids[i] = fmt.Sprint(r.JSON(t)["id"])
		}()
	}
	time.Sleep(300 * time.Millisecond) // all five are waiting on a queued request
	e.StartWorker()
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("different seats for one key: %v", ids)
		}
	}
	var seats int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 1 {
		t.Errorf("%d seats, want 1", seats)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 2})
	other := e.Tenant(seatdtest.TenantOptions{})
	items := []map[string]any{
		{"subscription_id": ten.SubscriptionID, "email": "b1@example.com"},
		{"subscription_id": ten.SubscriptionID, "email": "b2@example.com", "immediate_claim": true},
		{"subscription_id": ten.SubscriptionID, "email": "b3@example.com"},                             // pool full
		{"subscription_id": other.SubscriptionID, "email": "b4@example.com"},                           // not theirs
		{"subscription_id": ten.SubscriptionID, "customer_id": "00000000-0000-4000-8000-000000000009"}, // no such customer (but pool full first)
	}
	r := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": items})
	if r.Status != http.StatusAccepted {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	var got map[string]any
	seatdtest.WaitFor(t, 10*time.Second, "batch done", func() bool {
		got = e.Do("GET", loc, ten.Token, nil).JSON(t)
		return got["status"] == "completed"
	})
	counts := got["counts"].(map[string]any)
	if counts["succeeded"] != 2.0 || counts["failed"] != 3.0 || counts["queued"] != 0.0 {
		t.Errorf("counts %v", counts)
	}
	want := []string{"", "", "SeatNotAvailable", "ResourceNotFound", "SeatNotAvailable"}
	for i, it := range got["items"].([]any) {
		item := it.(map[string]any)
		if item["index"] != float64(i) {
			t.Errorf("item %d has index %v", i, item["index"])
		}
		if want[i] == "" {
			if item["status"] != "succeeded" || item["seat"] == nil {
				t.Errorf("item %d: %v", i, item)
			}
		} else if e, _ := item["error"].(map[string]any); item["status"] != "failed" || e["error"] != want[i] {
			t.Errorf("item %d: %v, want %s", i, item, want[i])
		}
	}
	if r := e.Do("GET", loc, other.Token, nil); r.Status != 404 {
		t.Errorf("other customer's batch: %d", r.Status)
	}

	// An invalid item names its index and nothing of the batch is published.
	bad := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": []map[string]any{
		{"subscription_id": ten.SubscriptionID, "email": "ok@example.com"},
		{"subscription_id": ten.SubscriptionID, "email": "nope"},
	}})
	if bad.Status != 422 {
		t.Fatalf("invalid batch: %d %s", bad.Status, bad.Body)
	}
	detail := bad.JSON(t)["detail"].([]any)[0].(map[string]any)
	if loc := fmt.Sprint(detail["loc"]); loc != "[body items 1 email]" {
		t.Errorf("loc %s", loc)
	}
	var n int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(items) {
		t.Errorf("%d ledger rows, want %d (the invalid batch recorded something)", n, len(items))
	}
	for _, size := range []int{0, 1001} {
		items := make([]map[string]any, size)
		for i := range items {
			items[i] = map[string]any{"subscription_id": ten.SubscriptionID, "email": fmt.Sprintf("u%d@example.com", i)}
		}
		if r := e.Do("POST", seatsPath+"/batch", ten.Token, map[string]any{"items": items}); r.Status != 422 {
			t.Errorf("batch of %d: %d", size, r.Status)
		}
	}
}

// TestIdempotencyAcrossRestart: the outcome lives in Postgres, not in the
// broker or the process, so a retry after seatd restarted (here: a new
// ingress, worker and even a new NATS server on the same database) replays
// the original answer.
func TestIdempotencyAcrossRestart(t *testing.T) {
	t.Parallel()
	first := seatdtest.New(t, seatdtest.Options{})
	ten := first.Tenant(seatdtest.TenantOptions{Seats: 2})
	body := map[string]any{"subscription_id": ten.SubscriptionID, "email": "restart@example.com"}
	r1 := first.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "across-restart")
	if r1.Status != 200 {
		t.Fatalf("first call: %d %s", r1.Status, r1.Body)
	}
	first.Close()

	second := seatdtest.New(t, seatdtest.Options{DatabaseURL: first.DBURL})
	r2 := second.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "across-restart")
	if r2.Status != 200 || r2.JSON(t)["id"] != r1.JSON(t)["id"] {
		t.Errorf("after restart: %d %s, want the seat %s", r2.Status, r2.Body, r1.JSON(t)["id"])
	}
	var seats int
	if err := second.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM seats`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != 1 {
		t.Errorf("%d seats, want 1", seats)
	}
}

// TestAsyncAcceptedReachStream: a 202 is answered once the ledger row is
// committed, before the stream acknowledges the publish; every accepted
// request is in the stream by the time the ingress has closed, and is then
// applied once.
func TestAsyncAcceptedReachStream(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 100})
	const n = 60
	var wg sync.WaitGroup
	ids := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID,
				"email": fmt.Sprintf("a%d@example.com", i)}, "Prefer", "respond-async")
			if r.Status != 202 {
				t.Errorf("status %d: %s", r.Status, r.Body)
				return
			}
			ids[i], _ = r.JSON(t)["request_id"].(string)
		}()
	}
	wg.Wait()
	e.HTTP.Close()
	e.Ingress.Close()
	info, err := seatdtest.Must(e.JS.Stream(context.Background(), events.RequestsStream)).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Errorf("%d requests in the stream after the ingress closed, want %d", info.State.Msgs, n)
	}
	e.StartWorker()
	for _, id := range ids {
		e.WaitApplied(id)
	}
	if got := e.SeatCount(); got != n {
		t.Errorf("%d seats, want %d", got, n)
	}
}
