package storage_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// databaseAtInit is a database as 0001_init.sql left it, for rows to be
// written the way earlier versions wrote them before Migrate runs the rest.
func databaseAtInit(t *testing.T) (string, *pgx.Conn, func(sql string, args ...any)) {
	t.Helper()
	url := storagetest.NewEmptyDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(string(init))
	exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	exec(`INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init.sql')`)
	return url, conn, exec
}

// TestMigrationKeysExistingAddresses: 0002 keys the addresses written
// before it (IDNA ones included), keeps what was typed, marks a second row
// for one mailbox instead of failing or deleting it, and moves live
// member-model seats to the new key so the next assign sees them.
func TestMigrationKeysExistingAddresses(t *testing.T) {
	url, conn, exec := databaseAtInit(t)
	ctx := context.Background()
	org := "11111111-1111-4111-8111-111111111111"
	exec(`INSERT INTO organizations (id, name, slug, member_model) VALUES ($1, 'Acme', 'acme', true)`, org)
	// Before 0002 these were four customers: two mailboxes, two spellings each.
	ids := []string{"c0000000-0000-4000-8000-000000000001", "c0000000-0000-4000-8000-000000000002",
		"c0000000-0000-4000-8000-000000000003", "c0000000-0000-4000-8000-000000000004"}
	emails := []string{"user@bücher.example", "User@xn--bcher-kva.example", "spaced@x.example ", "spaced@x.example"}
	for i := range ids {
		exec(`INSERT INTO customers (id, organization_id, email, created_at) VALUES ($1, $2, $3, now() - make_interval(mins => 10 - $4::int))`,
			ids[i], org, emails[i], i)
	}
	member := "d0000000-0000-4000-8000-000000000001"
	exec(`INSERT INTO members (id, customer_id, email, role) VALUES ($1, $2, 'Dev@Bücher.example', 'member')`, member, ids[0])
	sub := "e0000000-0000-4000-8000-000000000001"
	exec(`INSERT INTO subscriptions (id, customer_id, product_name, seats, seats_used, status) VALUES ($1, $2, 'Pro', 5, 1, 'active')`, sub, ids[0])
	seat := "f0000000-0000-4000-8000-000000000001"
	exec(`INSERT INTO seats (id, subscription_id, status, customer_id, member_id, email, holder) VALUES ($1, $2, 'claimed', $3, $4, 'Dev@Bücher.example', 'email:dev@bücher.example')`,
		seat, sub, ids[0], member)
	exec(`INSERT INTO requests (id, op, caller, payload) VALUES ('a0000000-0000-4000-8000-000000000001', 'assign', $1, '{"n": 1e2}')`, ids[0])

	if err := storage.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	want := []string{"user@xn--bcher-kva.example", "user@xn--bcher-kva.example #duplicate " + ids[1],
		"spaced@x.example", "spaced@x.example #duplicate " + ids[3]}
	for i, id := range ids {
		var email, key string
		if err := conn.QueryRow(ctx, `SELECT email, email_key FROM customers WHERE id = $1`, id).Scan(&email, &key); err != nil {
			t.Fatal(err)
		}
		if email != emails[i] || key != want[i] {
			t.Errorf("customer %d: email %q key %q, want %q %q", i, email, key, emails[i], want[i])
		}
	}
	var mkey, holder string
	if err := conn.QueryRow(ctx, `SELECT email_key FROM members WHERE id = $1`, member).Scan(&mkey); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT holder FROM seats WHERE id = $1`, seat).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if mkey != "dev@xn--bcher-kva.example" || holder != "email:dev@xn--bcher-kva.example" {
		t.Errorf("member key %q, seat holder %q", mkey, holder)
	}
	// A new row without a key (an older replica, psql) still gets one.
	exec(`INSERT INTO customers (id, organization_id, email) VALUES ('c0000000-0000-4000-8000-000000000009', $1, ' New@X.example')`, org)
	var key string
	if err := conn.QueryRow(ctx, `SELECT email_key FROM customers WHERE id = 'c0000000-0000-4000-8000-000000000009'`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if key != "new@x.example" {
		t.Errorf("trigger key %q", key)
	}
	var payload string
	if err := conn.QueryRow(ctx, `SELECT payload::text FROM requests`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if payload != `{"n": 100}` { // converted from the jsonb it was
		t.Errorf("payload %q", payload)
	}
}

// TestMigrationGivesProductsIdentity: 0008 makes one product per distinct
// (organization, product name) of the existing pools, monthly when a
// subscription names it and one-time when only orders do, links every
// pool to its product, and records existing subscriptions as started when
// they were created, renewing monthly.
func TestMigrationGivesProductsIdentity(t *testing.T) {
	url, conn, exec := databaseAtInit(t)
	ctx := context.Background()
	orgA, orgB := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	buyerA, buyerA2, buyerB := "c0000000-0000-4000-8000-00000000000a", "c0000000-0000-4000-8000-0000000000a2", "c0000000-0000-4000-8000-00000000000b"
	exec(`INSERT INTO organizations (id, name, slug) VALUES ($1, 'A', 'a'), ($2, 'B', 'b')`, orgA, orgB)
	exec(`INSERT INTO customers (id, organization_id, email) VALUES ($1, $4, 'a@a.test'), ($2, $4, 'a2@a.test'), ($3, $5, 'b@b.test')`,
		buyerA, buyerA2, buyerB, orgA, orgB)
	pools := []struct{ table, id, customer, product string }{
		{"subscriptions", "e0000000-0000-4000-8000-000000000001", buyerA, "Pro"},
		{"subscriptions", "e0000000-0000-4000-8000-000000000002", buyerA2, "Pro"}, // the same product, another buyer
		{"orders", "e0000000-0000-4000-8000-000000000003", buyerA, "Pro"},         // ordered too: still the one product
		{"orders", "e0000000-0000-4000-8000-000000000004", buyerA, "Lifetime"},    // orders only: one-time
		{"subscriptions", "e0000000-0000-4000-8000-000000000005", buyerB, "Pro"},  // another organization's Pro
		{"subscriptions", "e0000000-0000-4000-8000-000000000006", buyerA, "pro"},  // names differ in case: two products
	}
	for i, p := range pools {
		status := "active"
		if p.table == "orders" {
			status = "paid"
		}
		exec(`INSERT INTO `+p.table+` (id, customer_id, product_name, seats, status, created_at)
			VALUES ($1, $2, $3, 5, $4, now() - make_interval(days => 10 - $5::int))`, p.id, p.customer, p.product, status, i)
	}

	if err := storage.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	type product struct {
		org, name string
		interval  *string
	}
	rows, err := conn.Query(ctx, `SELECT organization_id::text, name, recurring_interval FROM products ORDER BY organization_id, name`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (product, error) {
		var p product
		return p, r.Scan(&p.org, &p.name, &p.interval)
	})
	if err != nil {
		t.Fatal(err)
	}
	month := "month"
	want := []product{{orgA, "Lifetime", nil}, {orgA, "Pro", &month}, {orgA, "pro", &month}, {orgB, "Pro", &month}}
	if len(got) != len(want) {
		t.Fatalf("products %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].org != want[i].org || got[i].name != want[i].name || (got[i].interval == nil) != (want[i].interval == nil) {
			t.Errorf("product %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, p := range pools {
		var org, name string
		if err := conn.QueryRow(ctx, `SELECT pr.organization_id::text, pr.name FROM `+p.table+` x JOIN products pr ON pr.id = x.product_id
			WHERE x.id = $1`, p.id).Scan(&org, &name); err != nil {
			t.Fatalf("%s %s: %v", p.table, p.id, err)
		}
		var custOrg string
		if err := conn.QueryRow(ctx, `SELECT organization_id::text FROM customers WHERE id = $1`, p.customer).Scan(&custOrg); err != nil {
			t.Fatal(err)
		}
		if name != p.product || org != custOrg {
			t.Errorf("%s %s is of %s of %s, want %s of %s", p.table, p.id, name, org, p.product, custOrg)
		}
	}
	var sameStart bool
	var amount int
	var currency, interval string
	if err := conn.QueryRow(ctx, `SELECT bool_and(started_at = created_at), min(amount), min(currency), min(recurring_interval)
		FROM subscriptions`).Scan(&sameStart, &amount, &currency, &interval); err != nil {
		t.Fatal(err)
	}
	if !sameStart || amount != 0 || currency != "usd" || interval != "month" {
		t.Errorf("subscriptions: started at creation %v, amount %d %s, interval %s", sameStart, amount, currency, interval)
	}
}
