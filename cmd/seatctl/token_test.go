package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage/storagetest"
)

// The seatctl token commands against a running pipeline: create prints a
// token in Polar's format once, and it works on the organization API; list
// never shows it; revoke ends it; bad input is refused with a message and
// writes nothing.
func TestTokenCommands(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	t.Setenv("SEATD_SECRET_KEY", hex.EncodeToString([]byte("seatd-test-secret-key-0123456789abcdef"))) // seatdtest.TestKeys
	ten := e.Tenant(seatdtest.TenantOptions{})

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "create", "--org", ten.OrgID, "--scope", "customer_portal:write"}, `unknown scope "customer_portal:write"`},
		{[]string{"token", "create", "--org", ten.OrgID}, "at least one --scope"},
		{[]string{"token", "create", "--scope", "customer_seats:read"}, "--org is required"},
		{[]string{"token", "create", "--org", "00000000-0000-4000-8000-000000000000", "--scope", "customer_seats:read"}, "organization not found"},
		{[]string{"token", "create", "--org", "acme", "--scope", "customer_seats:read"}, "not a UUID"},
		{[]string{"token", "create", "--org", ten.OrgID, "--scope", "customer_seats:read", "--expires-in", "-3d"}, "positive duration"},
		{[]string{"token", "create", "--org", ten.OrgID, "--scope", "customer_seats:read", "--expires-in", "soon"}, "positive duration"},
		{[]string{"token", "create", "--org", ten.OrgID, "--scope", "customer_seats:read", "--comment", "a\nb"}, "invalid comment"},
		{[]string{"token", "list"}, "--org is required"},
		{[]string{"token", "revoke", "00000000-0000-4000-8000-000000000000"}, "not found"},
		{[]string{"token", "revoke"}, "usage"},
	} {
		_, stderr, err := ctl(t, c.args...)
		if err == nil || !strings.Contains(err.Error()+stderr, c.want) {
			t.Errorf("seatctl %v: %v %s, want %q", c.args, err, stderr, c.want)
		}
	}
	if list := mustCtl(t, "token", "list", "--org", ten.OrgID)["tokens"].([]any); len(list) != 0 {
		t.Fatalf("refused creations left tokens: %v", list)
	}

	created, stderr, err := ctl(t, "token", "create", "--org", ten.OrgID, "--scope", "customer_seats:read", "--scope", "customer_seats:write",
		"--expires-in", "30d", "--comment", "billing backend")
	if err != nil {
		t.Fatal(err, stderr)
	}
	token, _ := created["token"].(string)
	if !regexp.MustCompile(`^polar_oat_[A-Za-z0-9]{43}$`).MatchString(token) || created["id"] == nil || created["organization_id"] != ten.OrgID {
		t.Fatalf("created %v", created)
	}
	if strings.Contains(stderr, token[len("polar_oat_"):]) {
		t.Errorf("the token reached the log: %s", stderr)
	}
	expires, err := time.Parse(time.RFC3339Nano, created["expires_at"].(string))
	if err != nil || time.Until(expires) < 29*24*time.Hour || time.Until(expires) > 31*24*time.Hour {
		t.Errorf("expires_at %v, want in 30 days", created["expires_at"])
	}
	if fmt.Sprint(created["scopes"]) != "[customer_seats:read customer_seats:write]" || created["comment"] != "billing backend" {
		t.Errorf("created %v", created)
	}
	list := "/v1/customer-seats?subscription_id=" + ten.SubscriptionID
	if r := e.Do("GET", list, token, nil); r.Status != 200 {
		t.Fatalf("the new token on the organization API: %d %s", r.Status, r.Body)
	}

	listed, stderr, err := ctl(t, "token", "list", "--org", ten.OrgID)
	if err != nil {
		t.Fatal(err, stderr)
	}
	tokens := listed["tokens"].([]any)
	first := tokens[0].(map[string]any)
	if len(tokens) != 1 || first["id"] != created["id"] || first["last_used_at"] == nil || first["revoked_at"] != nil {
		t.Errorf("list: %v", listed)
	}
	if _, ok := first["token"]; ok || strings.Contains(fmt.Sprint(listed), token[len("polar_oat_"):]) {
		t.Errorf("list shows the token: %v", listed)
	}
	// Nowhere in the database either.
	var dump string
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT string_agg(t::text, ' ') FROM org_tokens t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, token[len("polar_oat_"):]) {
		t.Errorf("the database holds the token: %s", dump)
	}

	revoked := mustCtl(t, "token", "revoke", created["id"].(string))
	if revoked["revoked_at"] == nil || revoked["id"] != created["id"] {
		t.Errorf("revoke: %v", revoked)
	}
	storagetest.Eventually(t, 3*time.Second, "the revoked token to be refused", func() error {
		if r := e.Do("GET", list, token, nil); r.Status != 401 {
			return fmt.Errorf("still %d", r.Status)
		}
		return nil
	})
	if again := mustCtl(t, "token", "revoke", created["id"].(string)); again["revoked_at"] != revoked["revoked_at"] {
		t.Errorf("revoking twice moved revoked_at: %v then %v", revoked["revoked_at"], again["revoked_at"])
	}
}

func TestParseExpiresIn(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "1d": 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseExpiresIn(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1h", "1.5d", "d", "30 days", "0s"} {
		if _, err := parseExpiresIn(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
