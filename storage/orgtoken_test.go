package storage_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

func tokenSetup(t *testing.T) (*storage.DB, secret.Keys, string) {
	t.Helper()
	db, err := storage.Open(t.Context(), storagetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	keys, _ := secret.NewKeys([]byte("org-token-test-secret-key-0123456789"))
	org, err := db.CreateOrganization(t.Context(), "Initech", true, false)
	if err != nil {
		t.Fatal(err)
	}
	return db, keys, org
}

func tokenRows(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM org_tokens`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOrgTokenLifecycle: a token authenticates as its organization with its
// scopes; the database holds its keyed hash and nothing of the token; an
// expired or revoked token is refused like an unknown one.
func TestOrgTokenLifecycle(t *testing.T) {
	t.Parallel()
	db, keys, org := tokenSetup(t)
	ctx := t.Context()
	tok, created, err := db.CreateOrgToken(ctx, keys, org, []string{storage.ScopeSeatsWrite, storage.ScopeSeatsRead, storage.ScopeSeatsRead}, 0, "backend")
	if err != nil {
		t.Fatal(err)
	}
	if !secret.ValidPrefixedToken("polar_oat_", tok) {
		t.Fatalf("token %q is not in Polar's format", tok)
	}
	if strings.Join(created.Scopes, " ") != "customer_seats:read customer_seats:write" || created.ExpiresAt != nil {
		t.Errorf("created %+v", created)
	}
	got, err := db.AuthenticateOrgToken(ctx, keys, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || got.OrganizationID != org || !got.HasScope(storage.ScopeSeatsRead) || !got.HasScope(storage.ScopeSeatsWrite) {
		t.Errorf("authenticated as %+v", got)
	}

	// At rest: the HMAC under the secret key, and not the token.
	var hash []byte
	var dump string
	if err := db.Pool.QueryRow(ctx, `SELECT token_hash, t::text FROM org_tokens t WHERE id = $1`, created.ID).Scan(&hash, &dump); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash, keys.AccessTokenHash(tok)) || strings.Contains(dump, tok[len("polar_oat_"):len("polar_oat_")+20]) {
		t.Errorf("stored row %s", dump)
	}
	// Another deployment's secret key cannot use the row.
	otherKeys, _ := secret.NewKeys([]byte("another-deployment-secret-key-012345"))
	if _, err := db.AuthenticateOrgToken(ctx, otherKeys, tok); events.ErrorCode(err) != events.CodeUnauthorized {
		t.Errorf("under another secret key: %v", err)
	}

	for name, bad := range map[string]string{
		"empty": "", "no prefix": tok[len("polar_oat_"):], "typo": tok[:20] + string(rune(tok[20])^1) + tok[21:],
		"unknown": secret.NewPrefixedToken("polar_oat_"), "a session token": secret.NewRandomToken(),
	} {
		if _, err := db.AuthenticateOrgToken(ctx, keys, bad); events.ErrorCode(err) != events.CodeUnauthorized {
			t.Errorf("%s: %v", name, err)
		}
	}

	revoked, err := db.RevokeOrgToken(ctx, created.ID)
	if err != nil || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	if _, err := db.AuthenticateOrgToken(ctx, keys, tok); events.ErrorCode(err) != events.CodeUnauthorized {
		t.Errorf("revoked token: %v", err)
	}
	again, err := db.RevokeOrgToken(ctx, created.ID)
	if err != nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("revoking twice: %+v %v (first %v)", again, err, revoked.RevokedAt)
	}

	short, st, err := db.CreateOrgToken(ctx, keys, org, []string{storage.ScopeSeatsRead}, 300*time.Millisecond, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExpiresAt == nil || time.Until(*st.ExpiresAt) > 300*time.Millisecond {
		t.Errorf("expires_at %v", st.ExpiresAt)
	}
	if _, err := db.AuthenticateOrgToken(ctx, keys, short); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	time.Sleep(time.Until(*st.ExpiresAt))
	if _, err := db.AuthenticateOrgToken(ctx, keys, short); events.ErrorCode(err) != events.CodeUnauthorized {
		t.Errorf("after expiry: %v", err)
	}

	list, err := db.OrgTokens(ctx, org)
	if err != nil || len(list) != 2 || list[0].ID != created.ID || list[0].RevokedAt == nil || list[1].ID != st.ID {
		t.Errorf("list: %+v %v", list, err)
	}
}

// TestOrgTokenBadInputWritesNothing: unknown scopes, no scope, a missing or
// malformed organization, a past expiry and a comment with control
// characters are refused with a message, and no row is written.
func TestOrgTokenBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	db, keys, org := tokenSetup(t)
	ctx := t.Context()
	for _, c := range []struct {
		name    string
		org     string
		scopes  []string
		expires time.Duration
		comment string
		code    events.Code
		want    string
	}{
		{"portal scope", org, []string{"customer_portal:write"}, 0, "", events.CodeInvalid, `unknown scope "customer_portal:write"`},
		{"typo", org, []string{storage.ScopeSeatsRead, "customer_seat:write"}, 0, "", events.CodeInvalid, "unknown scope"},
		{"no scope", org, nil, 0, "", events.CodeInvalid, "at least one scope"},
		{"unknown org", "00000000-0000-4000-8000-000000000000", []string{storage.ScopeSeatsRead}, 0, "", events.CodeNotFound, "organization not found"},
		{"malformed org", "acme", []string{storage.ScopeSeatsRead}, 0, "", events.CodeInvalid, "not a UUID"},
		{"past expiry", org, []string{storage.ScopeSeatsRead}, -time.Hour, "", events.CodeInvalid, "expiry"},
		{"comment with CR LF", org, []string{storage.ScopeSeatsRead}, 0, "a\r\nb", events.CodeInvalid, "invalid comment"},
	} {
		tok, _, err := db.CreateOrgToken(ctx, keys, c.org, c.scopes, c.expires, c.comment)
		if tok != "" || events.ErrorCode(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q, %v; want %s %q", c.name, tok, err, c.code, c.want)
		}
	}
	if n := tokenRows(t, db); n != 0 {
		t.Errorf("%d tokens written by refused creations", n)
	}
	if _, err := db.OrgTokens(ctx, "00000000-0000-4000-8000-000000000000"); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("listing an unknown organization: %v", err)
	}
	if _, err := db.RevokeOrgToken(ctx, "00000000-0000-4000-8000-000000000000"); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("revoking an unknown token: %v", err)
	}
}

// TestOrgTokenLastUsedIsCheap: last_used_at is recorded on first use and
// then at most once a minute, however often the token is used.
func TestOrgTokenLastUsedIsCheap(t *testing.T) {
	t.Parallel()
	db, keys, org := tokenSetup(t)
	ctx := context.Background()
	tok, created, err := db.CreateOrgToken(ctx, keys, org, []string{storage.ScopeSeatsRead}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	lastUsed := func() *time.Time {
		list, err := db.OrgTokens(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		return list[0].LastUsedAt
	}
	if lastUsed() != nil {
		t.Fatal("a new token has been used")
	}
	for range 20 {
		if _, err := db.AuthenticateOrgToken(ctx, keys, tok); err != nil {
			t.Fatal(err)
		}
	}
	first := lastUsed()
	if first == nil || time.Since(*first) > time.Minute {
		t.Fatalf("last_used_at after use: %v", first)
	}
	// Within the minute, further uses do not write it again.
	time.Sleep(10 * time.Millisecond)
	for range 20 {
		if _, err := db.AuthenticateOrgToken(ctx, keys, tok); err != nil {
			t.Fatal(err)
		}
	}
	if again := lastUsed(); !again.Equal(*first) {
		t.Errorf("last_used_at moved from %v to %v within a minute", first, again)
	}
	// A minute later, the next use records it.
	if _, err := db.Pool.Exec(ctx, `UPDATE org_tokens SET last_used_at = now() - interval '61 seconds' WHERE id = $1`, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AuthenticateOrgToken(ctx, keys, tok); err != nil {
		t.Fatal(err)
	}
	if later := lastUsed(); time.Since(*later) > 5*time.Second {
		t.Errorf("last_used_at not recorded after a minute: %v", later)
	}
}
