package main

import (
	"context"
	"strings"
	"testing"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestProvisioningRefusesBadInput: seatctl refuses what cannot be an
// address, unknown roles and unknown scopes, creates nothing for them,
// and treats differently spelled addresses of one mailbox as one.
func TestProvisioningRefusesBadInput(t *testing.T) {
	dbURL := storagetest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	org := mustCtl(t, "org", "create", "--name", "Acme")["id"].(string)
	cust := mustCtl(t, "customer", "create", "--org", org, "--email", " buyer@bücher.example ")["id"].(string)

	bad := map[string][]string{
		"CR LF in customer email":      {"customer", "create", "--org", org, "--email", "x@acme.test\r\nBcc: y@acme.test"},
		"invalid UTF-8":                {"customer", "create", "--org", org, "--email", "x\xff@acme.test"},
		"address literal":              {"customer", "create", "--org", org, "--email", "x@[192.0.2.1]"},
		"local part over 64":           {"customer", "create", "--org", org, "--email", strings.Repeat("l", 65) + "@acme.test"},
		"over 254":                     {"customer", "create", "--org", org, "--email", "x@" + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + ".test"},
		"same mailbox, IDNA spelling":  {"customer", "create", "--org", org, "--email", "BUYER@xn--bcher-kva.example"},
		"same mailbox, spaces":         {"customer", "create", "--org", org, "--email", "buyer@bücher.example"},
		"CR LF in member email":        {"member", "create", "--customer", cust, "--email", "m@acme.test\n"},
		"unknown role":                 {"member", "create", "--customer", cust, "--email", "m@acme.test", "--role", "admin"},
		"role in other case":           {"member", "create", "--customer", cust, "--email", "m@acme.test", "--role", "Owner"},
		"unknown scope":                {"session", "create", "--customer", cust, "--scope", "admin"},
		"CR LF in organization name":   {"org", "create", "--name", "Evil\r\nBcc: x@y.example"},
		"CR LF in product name":        {"product", "create", "--org", org, "--name", "Pro\nX-Header: 1"},
		"CR LF in product description": {"product", "create", "--org", org, "--name", "Pro", "--description", "a\r\nb"},
		"CR LF in member name":         {"member", "create", "--customer", cust, "--email", "n@acme.test", "--name", "N\r\nBcc: x@y.example"},
		"control in external id":       {"customer", "create", "--org", org, "--email", "ext@acme.test", "--external-id", "a\x1bb"},
		"scope among good ones":        {"session", "create", "--customer", cust, "--scope", "customer_portal:read", "--scope", "customer_portal:*"},
	}
	for name, args := range bad {
		if out, _, err := ctl(t, args...); err == nil {
			t.Errorf("%s: accepted: %v", name, out)
		}
	}

	db, err := storage.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var orgs, subs, products int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM organizations`).Scan(&orgs); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM subscriptions`).Scan(&subs); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM products`).Scan(&products); err != nil {
		t.Fatal(err)
	}
	if orgs != 1 || subs != 0 || products != 0 {
		t.Errorf("refused commands left %d organizations, %d subscriptions, %d products", orgs, subs, products)
	}
	var customers, members, sessions int
	var display, key string
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*), min(email), min(email_key) FROM customers WHERE organization_id = $1`, org).
		Scan(&customers, &display, &key); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM members`).Scan(&members); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions`).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if customers != 1 || members != 0 || sessions != 0 {
		t.Errorf("refused commands left rows: %d customers, %d members, %d sessions", customers, members, sessions)
	}
	if display != "buyer@bücher.example" || key != "buyer@xn--bcher-kva.example" {
		t.Errorf("stored %q keyed %q; want what was typed (trimmed) and the IDNA key", display, key)
	}
	mustCtl(t, "member", "create", "--customer", cust, "--email", "m@acme.test", "--role", "owner")
	if _, _, err := ctl(t, "member", "create", "--customer", cust, "--email", "M@ACME.test"); err == nil {
		t.Error("a second member for one mailbox was created")
	}
}
