package storage_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestMigrationKeysExistingAddresses: 0002 keys the addresses written
// before it (IDNA ones included), keeps what was typed, marks a second row
// for one mailbox instead of failing or deleting it, and moves live
// member-model seats to the new key so the next assign sees them.
func TestMigrationKeysExistingAddresses(t *testing.T) {
	url := storagetest.NewEmptyDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
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
