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
	mem := mustCtl(t, "member", "create", "--customer", cust, "--email", "boss@acme.test", "--role", "billing_manager",
		"--name", "The Boss", "--external-id", "usr_1")["id"].(string)
	pro := mustCtl(t, "product", "create", "--org", org, "--name", "Pro", "--description", "For teams")
	lifetime := mustCtl(t, "product", "create", "--org", org, "--name", "Lifetime", "--interval", "none")
	if pro["recurring_interval"] != "month" || pro["recurring_interval_count"] != 1.0 || pro["description"] != "For teams" ||
		lifetime["recurring_interval"] != nil || lifetime["organization_id"] != org {
		t.Errorf("products %v %v", pro, lifetime)
	}
	if list := mustCtl(t, "product", "list", "--org", org)["products"].([]any); len(list) != 2 ||
		list[0].(map[string]any)["id"] != pro["id"] || list[1].(map[string]any)["id"] != lifetime["id"] {
		t.Errorf("product list %v", list)
	}
	// --product takes a product's name (when one product has it) or its id.
	created := mustCtl(t, "subscription", "create", "--customer", cust, "--seats", "2", "--product", "Pro", "--amount", "4900",
		"--currency", "EUR", "--started-at", "2026-01-15T09:00:00Z")
	sub := created["id"].(string)
	if created["product_id"] != pro["id"] {
		t.Errorf("subscription of %v, want Pro %v", created["product_id"], pro["id"])
	}
	ord := mustCtl(t, "order", "create", "--customer", cust, "--seats", "1", "--status", "pending", "--product", lifetime["id"].(string))["id"].(string)
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
	var product, status, currency, interval string
	var seats, amount int
	var started time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT p.name, s.seats, s.status, s.amount, s.currency, s.recurring_interval, s.started_at
		FROM subscriptions s JOIN products p ON p.id = s.product_id WHERE s.id = $1`, sub).
		Scan(&product, &seats, &status, &amount, &currency, &interval, &started); err != nil {
		t.Fatal(err)
	}
	if product != "Pro" || seats != 2 || status != "active" || amount != 4900 || currency != "eur" || interval != "month" ||
		!started.Equal(time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("subscription %s %d %s %d %s %s %s", product, seats, status, amount, currency, interval, started)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT o.status, p.name FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = $1`, ord).
		Scan(&status, &product); err != nil {
		t.Fatal(err)
	}
	if product != "Lifetime" {
		t.Errorf("order of %s", product)
	}
	var memberName, memberExt string
	if err := db.Pool.QueryRow(ctx, `SELECT name, external_id FROM members WHERE id = $1`, mem).Scan(&memberName, &memberExt); err != nil {
		t.Fatal(err)
	}
	if memberName != "The Boss" || memberExt != "usr_1" {
		t.Errorf("member %q %q", memberName, memberExt)
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

	// Bad input gets a clear error and changes nothing. A second product
	// named Pro makes the name ambiguous: then only its id will do.
	mustCtl(t, "product", "create", "--org", org, "--name", "Pro", "--interval", "year")
	elsewhere := mustCtl(t, "org", "create", "--name", "Elsewhere")["id"].(string)
	theirs := mustCtl(t, "product", "create", "--org", elsewhere, "--name", "Theirs")["id"].(string)
	for _, c := range []struct {
		args []string
		why  string
	}{
		{[]string{"customer", "create", "--org", org}, "--email is required"},
		{[]string{"customer", "create", "--org", "nope", "--email", "a@b.co"}, "not a UUID"},
		{[]string{"customer", "create", "--org", org, "--email", "not-an-email"}, "invalid email"},
		{[]string{"member", "create", "--customer", cust, "--email", "x@acme.test", "--role", "emperor"}, "role must be"},
		{[]string{"member", "create", "--customer", cust, "--email", "x@acme.test", "--external-id", "usr_1"}, "already exists"},
		{[]string{"subscription", "create", "--customer", cust}, "--product is required"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1"}, "--product is required"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", "Pro"}, "more than one product"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", "Nope"}, `no product of the customer's organization is named "Nope"`},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", theirs}, "is not a product of the customer's organization"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", "Lifetime"}, "a subscription needs a recurring one"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", pro["id"].(string), "--currency", "dollars"}, "three-letter code"},
		{[]string{"subscription", "create", "--customer", cust, "--seats", "1", "--product", pro["id"].(string), "--started-at", "yesterday"}, "started-at"},
		{[]string{"order", "create", "--customer", cust, "--seats", "1", "--status", "refunded", "--product", "Lifetime"}, "status must be"},
		{[]string{"product", "create", "--org", org, "--name", "Pro", "--interval", "fortnight"}, "interval"},
		{[]string{"product", "create", "--org", org, "--name", theirs}, "looks like an id"},
		{[]string{"product", "create", "--org", org}, "--name is required"},
		{[]string{"checkout", "create", "--subscription", sub, "--order", ord}, "exactly one"},
		{[]string{"session", "create"}, "exactly one"},
		{[]string{"frobnicate"}, "unknown command"},
	} {
		if _, stderr, err := ctl(t, c.args...); err == nil {
			t.Errorf("seatctl %v succeeded", c.args)
		} else if !strings.Contains(err.Error()+stderr, c.why) {
			t.Errorf("seatctl %v: %v %s, want it to say %q", c.args, err, stderr, c.why)
		}
	}
	var customers, members, pools, products int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM members),
		(SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM orders), (SELECT count(*) FROM products)`).
		Scan(&customers, &members, &pools, &products); err != nil {
		t.Fatal(err)
	}
	if customers != 1 || members != 1 || pools != 2 || products != 4 {
		t.Errorf("after refused commands: %d customers, %d members, %d pools, %d products; want 1, 1, 2, 4", customers, members, pools, products)
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
