package main

import (
	"context"
	"strings"
	"testing"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// An organization's claim return URL is set on create and changed with org
// update; a URL that could leak the session token is refused and changes
// nothing.
func TestOrgClaimReturnURL(t *testing.T) {
	dbURL := storagetest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	db, err := storage.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := func(org string) string {
		t.Helper()
		var u *string
		if err := db.Pool.QueryRow(context.Background(), `SELECT claim_return_url FROM organizations WHERE id = $1`, org).Scan(&u); err != nil {
			t.Fatal(err)
		}
		if u == nil {
			return "<null>"
		}
		return *u
	}
	orgs := func() (n int) {
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM organizations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	org := mustCtl(t, "org", "create", "--name", "Acme", "--claim-return-url", "https://app.acme.test/welcome?from=seatd")["id"].(string)
	if got := stored(org); got != "https://app.acme.test/welcome?from=seatd" {
		t.Errorf("after create: %q", got)
	}
	out := mustCtl(t, "org", "update", org, "--claim-return-url", "http://localhost:3000/in")
	if out["claim_return_url"] != "http://localhost:3000/in" || stored(org) != "http://localhost:3000/in" {
		t.Errorf("after update: %v, stored %q", out, stored(org))
	}

	for _, bad := range []struct{ url, says string }{
		{"http://app.acme.test/in", "https"},
		{"javascript:alert(1)", "absolute"},
		{"/relative", "absolute"},
		{"https://app.acme.test/in#x", "fragment"},
		{"https://user:pw@app.acme.test/", "password"},
		{"ftp://app.acme.test/", "https"},
		{"https:///nohost", "host"},
	} {
		before := orgs()
		_, _, err := ctl(t, "org", "create", "--name", "Bad", "--claim-return-url", bad.url)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("create with %q: %v, want an error saying %q", bad.url, err, bad.says)
		}
		if orgs() != before {
			t.Errorf("create with %q made an organization", bad.url)
		}
		_, _, err = ctl(t, "org", "update", org, "--claim-return-url", bad.url)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("update with %q: %v, want an error saying %q", bad.url, err, bad.says)
		}
		if got := stored(org); got != "http://localhost:3000/in" {
			t.Errorf("update with %q changed the URL to %q", bad.url, got)
		}
	}
	if _, _, err := ctl(t, "org", "update", "6a0f7a43-6c1e-4a43-9c25-2b1a0a0b0c0d", "--claim-return-url", "https://x.test/"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("update of an unknown org: %v", err)
	}
	if _, _, err := ctl(t, "org", "update", org); err == nil {
		t.Error("update with nothing to change succeeded")
	}
	// An empty URL clears it.
	mustCtl(t, "org", "update", org, "--claim-return-url", "")
	if got := stored(org); got != "<null>" {
		t.Errorf("after clearing: %q", got)
	}
}
