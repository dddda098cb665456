package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// ctl runs seatctl in-process and returns its stdout JSON object, its
// stderr and its error.
func ctl(t *testing.T, args ...string) (map[string]any, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	var obj map[string]any
	if err == nil {
		if jerr := json.Unmarshal(out.Bytes(), &obj); jerr != nil {
			t.Fatalf("seatctl %v: stdout is not one JSON object: %v: %q", args, jerr, out.String())
		}
	}
	return obj, errb.String(), err
}

func mustCtl(t *testing.T, args ...string) map[string]any {
	t.Helper()
	obj, stderr, err := ctl(t, args...)
	if err != nil {
		t.Fatalf("seatctl %v: %v %s", args, err, stderr)
	}
	return obj
}

func TestProvisioning(t *testing.T) {
	dbURL := storagetest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	org := mustCtl(t, "org", "create", "--name", "Acme", "--member-model")["id"].(string)
	cust := mustCtl(t, "customer", "create", "--org", org, "--email", "buyer@acme.test", "--external-id", "ext-1")["id"].(string)
	mem := mustCtl(t, "member", "create", "--customer", cust, "--email", "boss@acme.test", "--role", "billing_manager")["id"].(string)
	sub := mustCtl(t, "subscription", "create", "--customer", cust, "--seats", "2", "--product", "Pro")["id"].(string)
	ord := mustCtl(t, "order", "create", "--customer", cust, "--seats", "1", "--status", "pending")["id"].(string)
	co := mustCtl(t, "checkout", "create", "--order", ord)["id"].(string)
	sess := mustCtl(t, "session", "create", "--member", mem, "--ttl", "2h")
	custSess := mustCtl(t, "session", "create", "--customer", cust, "--scope", "customer_portal:read")

	db, err := storage.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var memberModel, pricing bool
	if err := db.Pool.QueryRow(ctx, `SELECT member_model, seat_based_pricing FROM organizations WHERE id = $1`, org).Scan(&memberModel, &pricing); err != nil {
		t.Fatal(err)
	}
	if !memberModel || !pricing {
		t.Errorf("org member_model=%v seat_based_pricing=%v", memberModel, pricing)
	}
	var product, status string
	var seats int
	if err := db.Pool.QueryRow(ctx, `SELECT product_name, seats, status FROM subscriptions WHERE id = $1`, sub).Scan(&product, &seats, &status); err != nil {
		t.Fatal(err)
	}
	if product != "Pro" || seats != 2 || status != "active" {
		t.Errorf("subscription %s %d %s", product, seats, status)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, ord).Scan(&status); err != nil {
		t.Fatal(err)
	}
	var coOrder string
	if err := db.Pool.QueryRow(ctx, `SELECT order_id FROM checkouts WHERE id = $1`, co).Scan(&coOrder); err != nil {
		t.Fatal(err)
	}
	if status != "pending" || coOrder != ord {
		t.Errorf("order %s, checkout → %s", status, coOrder)
	}
	// The session tokens authenticate, with their member and scopes.
	s, err := db.Authenticate(ctx, sess["token"].(string))
	if err != nil || s.MemberID != mem || s.MemberRole != "billing_manager" || !s.HasScope(storage.ScopeWrite) {
		t.Errorf("member session: %+v %v", s, err)
	}
	if exp, _ := time.Parse(time.RFC3339Nano, sess["expires_at"].(string)); time.Until(exp) < 119*time.Minute {
		t.Errorf("ttl not applied: %v", sess["expires_at"])
	}
	s, err = db.Authenticate(ctx, custSess["token"].(string))
	if err != nil || s.HasScope(storage.ScopeWrite) || !s.HasScope(storage.ScopeRead) {
		t.Errorf("read-only customer session: %+v %v", s, err)
	}
	var stored int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE token_hash = $1`, []byte(sess["token"].(string))).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Error("a session token is stored in clear")
	}

	// set-seats: up is fine, below the seats in use is refused.
	mustCtl(t, "subscription", "set-seats", sub, "5")
	if _, err := db.Pool.Exec(ctx, `UPDATE subscriptions SET seats_used = 3 WHERE id = $1`, sub); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := ctl(t, "subscription", "set-seats", sub, "2"); err == nil {
		t.Error("set-seats below the seats in use was accepted")
	} else if !strings.Contains(err.Error()+stderr, "3 seats are in use") {
		t.Errorf("unclear refusal: %v %s", err, stderr)
	}

	// Bad input gets a clear error and changes nothing.
	for _, args := range [][]string{
		{"customer", "create", "--org", org},
		{"customer", "create", "--org", "nope", "--email", "a@b.co"},
		{"customer", "create", "--org", org, "--email", "not-an-email"},
		{"member", "create", "--customer", cust, "--email", "x@acme.test", "--role", "emperor"},
		{"subscription", "create", "--customer", cust},
		{"order", "create", "--customer", cust, "--seats", "1", "--status", "refunded"},
		{"checkout", "create", "--subscription", sub, "--order", ord},
		{"session", "create"},
		{"frobnicate"},
	} {
		if _, _, err := ctl(t, args...); err == nil {
			t.Errorf("seatctl %v succeeded", args)
		}
	}
	var customers int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM customers`).Scan(&customers); err != nil {
		t.Fatal(err)
	}
	if customers != 1 {
		t.Errorf("%d customers after refused commands, want 1", customers)
	}
}

func TestSeatShowAndDeadLetters(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: t.TempDir(), MaxDeliveries: 2})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("NATS_URL", e.Server.ClientURL())
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := e.Do("POST", "/v1/customer-portal/seats", ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "shown@example.com"})
	if r.Status != 200 {
		t.Fatalf("assign: %d %s", r.Status, r.Body)
	}
	id := r.JSON(t)["id"].(string)
	var inv map[string]any
	seatdtest.WaitFor(t, 10*time.Second, "invitation delivered", func() bool {
		out := mustCtl(t, "seat", "show", id)
		inv, _ = out["invitation"].(map[string]any)
		return inv != nil && inv["delivery_state"] == "sent"
	})
	if inv["attempts"] != 1.0 || inv["sent_at"] == nil {
		t.Errorf("seat show invitation: %v", inv)
	}
	if _, _, err := ctl(t, "seat", "show", "00000000-0000-4000-8000-000000000000"); err == nil {
		t.Error("seat show of an unknown seat succeeded")
	}

	// A message the worker cannot decode becomes a dead letter.
	if _, err := e.JS.Publish(context.Background(), events.RequestsSubject, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	seatdtest.WaitFor(t, 10*time.Second, "dead letter listed", func() bool {
		list = mustCtl(t, "dlq", "list")
		return list["count"] == 1.0
	})
	entry := list["dead_letters"].([]any)[0].(map[string]any)
	seq := jsonNumber(entry["id"])
	shown := mustCtl(t, "dlq", "show", seq)
	if shown["raw"] != "garbage" || shown["reason"] == "" {
		t.Errorf("dlq show: %v", shown)
	}
	if rep := mustCtl(t, "dlq", "replay", "--all"); rep["count"] != 1.0 {
		t.Errorf("dlq replay --all: %v", rep)
	}
	// Replayed garbage is dead-lettered again; purge empties the stream.
	seatdtest.WaitFor(t, 10*time.Second, "dead letter again", func() bool {
		return mustCtl(t, "dlq", "list")["count"] == 1.0
	})
	if p := mustCtl(t, "dlq", "purge"); p["purged"] != 1.0 {
		t.Errorf("purge: %v", p)
	}
	if l := mustCtl(t, "dlq", "list"); l["count"] != 0.0 {
		t.Errorf("after purge: %v", l)
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
