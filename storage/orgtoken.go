package storage

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// Organization access token scopes, as Polar names them.
const (
	ScopeSeatsRead  = "customer_seats:read"
	ScopeSeatsWrite = "customer_seats:write"
)

// OrgScopes are the scopes an organization access token may hold.
var OrgScopes = []string{ScopeSeatsRead, ScopeSeatsWrite}

// OrgTokenPrefix starts every organization access token, as in Polar.
const OrgTokenPrefix = "polar_oat_"

// lastUsedResolution is how stale last_used_at may be: it is written at
// most this often per token, so using a token costs no write per request.
const lastUsedResolution = time.Minute

// OrgToken is an organization access token as seatd keeps it: everything
// but the token, which exists in clear only in CreateOrgToken's answer.
type OrgToken struct {
	ID             string     `json:"id"`
	OrganizationID string     `json:"organization_id"`
	Scopes         []string   `json:"scopes"`
	Comment        string     `json:"comment"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      *time.Time `json:"expires_at"` // nil: never
	RevokedAt      *time.Time `json:"revoked_at"`
	LastUsedAt     *time.Time `json:"last_used_at"` // to the minute
}

// HasScope reports whether the token holds scope. As in Polar, neither
// scope implies the other.
func (t OrgToken) HasScope(scope string) bool { return slices.Contains(t.Scopes, scope) }

// LiveAt reports whether the token authenticates at now: not revoked and
// not expired.
func (t OrgToken) LiveAt(now time.Time) bool {
	return t.RevokedAt == nil && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
}

// CreateOrgToken creates an access token for an organization with the
// given scopes (at least one of OrgScopes), expiring after expiresIn (0:
// never), and returns the token, which is shown once and never stored.
// Bad input is refused before anything is written.
func (db *DB) CreateOrgToken(ctx context.Context, keys secret.Keys, orgID string, scopes []string, expiresIn time.Duration, comment string) (string, OrgToken, error) {
	if _, ok := events.ParseUUID(orgID); !ok {
		return "", OrgToken{}, events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	if len(scopes) == 0 {
		return "", OrgToken{}, events.Errorf(events.CodeInvalid, "a token needs at least one scope: %s or %s", ScopeSeatsRead, ScopeSeatsWrite)
	}
	for _, s := range scopes {
		if !slices.Contains(OrgScopes, s) {
			return "", OrgToken{}, events.Errorf(events.CodeInvalid, "unknown scope %q: scopes are %s and %s", s, ScopeSeatsRead, ScopeSeatsWrite)
		}
	}
	if expiresIn < 0 {
		return "", OrgToken{}, events.Errorf(events.CodeInvalid, "expiry must be in the future")
	}
	if comment != "" {
		if err := plainText("comment", comment); err != nil {
			return "", OrgToken{}, err
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	t := OrgToken{ID: uuid.NewString(), OrganizationID: orgID, Comment: comment, CreatedAt: now,
		Scopes: slices.Compact(slices.Sorted(slices.Values(scopes)))}
	if expiresIn > 0 {
		t.ExpiresAt = ptr(now.Add(expiresIn))
	}
	token := secret.NewPrefixedToken(OrgTokenPrefix)
	_, err := db.Pool.Exec(ctx, `INSERT INTO org_tokens (id, organization_id, token_hash, scopes, comment, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, t.ID, orgID, keys.AccessTokenHash(token), t.Scopes, comment, t.ExpiresAt, now)
	if err != nil {
		return "", OrgToken{}, provisionErr(err, "organization")
	}
	return token, t, nil
}

const orgTokenColumns = `id, organization_id, scopes, comment, created_at, expires_at, revoked_at, last_used_at`

func scanOrgToken(row pgx.Row, extra ...any) (OrgToken, error) {
	var t OrgToken
	err := row.Scan(append([]any{&t.ID, &t.OrganizationID, &t.Scopes, &t.Comment, &t.CreatedAt, &t.ExpiresAt,
		&t.RevokedAt, &t.LastUsedAt}, extra...)...)
	utc(&t.CreatedAt)
	for _, p := range []*time.Time{t.ExpiresAt, t.RevokedAt, t.LastUsedAt} {
		if p != nil {
			utc(p)
		}
	}
	return t, err
}

// OrgTokens lists an organization's tokens, revoked and expired ones too,
// oldest first.
func (db *DB) OrgTokens(ctx context.Context, orgID string) ([]OrgToken, error) {
	if _, ok := events.ParseUUID(orgID); !ok {
		return nil, events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)`, orgID).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, events.Errorf(events.CodeNotFound, "organization %s not found", orgID)
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+orgTokenColumns+` FROM org_tokens WHERE organization_id = $1
		ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (OrgToken, error) { return scanOrgToken(row) })
}

// RevokeOrgToken ends a token for good. Revoking a revoked token changes
// nothing and returns it as it is.
func (db *DB) RevokeOrgToken(ctx context.Context, id string) (OrgToken, error) {
	if _, ok := events.ParseUUID(id); !ok {
		return OrgToken{}, events.Errorf(events.CodeInvalid, "token id %q is not a UUID", id)
	}
	t, err := scanOrgToken(db.Pool.QueryRow(ctx, `UPDATE org_tokens SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+orgTokenColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return OrgToken{}, events.Errorf(events.CodeNotFound, "token %s not found", id)
	}
	return t, err
}

// AuthenticateOrgToken finds the live token for a bearer token. Malformed,
// unknown, expired and revoked tokens are the same error; a string that
// cannot be a token (its checksum fails) costs no lookup. Only the keyed
// hash is looked up, and the stored hash is compared in constant time.
func (db *DB) AuthenticateOrgToken(ctx context.Context, keys secret.Keys, token string) (OrgToken, error) {
	unauthorized := errBadBearer
	if !secret.ValidPrefixedToken(OrgTokenPrefix, token) {
		return OrgToken{}, unauthorized
	}
	hash := keys.AccessTokenHash(token)
	var stored []byte
	t, err := scanOrgToken(db.Pool.QueryRow(ctx, `SELECT `+orgTokenColumns+`, token_hash FROM org_tokens
		WHERE token_hash = $1`, hash), &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return OrgToken{}, unauthorized
	}
	if err != nil {
		return OrgToken{}, err
	}
	now := time.Now()
	if !secret.SameHash(stored, hash) || !t.LiveAt(now) {
		return OrgToken{}, unauthorized
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) >= lastUsedResolution {
		// The condition makes replicas that look the token up together
		// write it once. It is bookkeeping: a failure to record it must
		// not refuse a valid token, so its error is dropped.
		_, _ = db.Pool.Exec(ctx, `UPDATE org_tokens SET last_used_at = now()
			WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)`, t.ID, lastUsedResolution)
	}
	return t, nil
}
