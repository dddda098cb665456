package storage

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// Session scopes.
const (
	ScopeRead  = "customer_portal:read"
	ScopeWrite = "customer_portal:write"
)

// DefaultScopes are given to sessions created without explicit scopes.
var DefaultScopes = []string{ScopeRead, ScopeWrite}

// Session is an authenticated caller.
type Session struct {
	ID             string
	CustomerID     string // for a member session: the member's customer
	MemberID       string // empty for a customer session
	MemberRole     string
	OrganizationID string
	Scopes         []string
	ExpiresAt      time.Time
}

// HasScope reports whether the session holds scope (write implies read).
func (s Session) HasScope(scope string) bool {
	if slices.Contains(s.Scopes, scope) {
		return true
	}
	return scope == ScopeRead && slices.Contains(s.Scopes, ScopeWrite)
}

// CanManageSeats reports whether the caller may assign and manage seats:
// customers may, members only as owner or billing manager.
func (s Session) CanManageSeats() bool {
	return s.MemberID == "" || s.MemberRole == "owner" || s.MemberRole == "billing_manager"
}

// errBadBearer answers every bearer token that authenticates no one,
// whatever its kind, in authlib's words, as Polar answers one.
var errBadBearer = events.Errorf(events.CodeUnauthorized,
	"The access token provided is expired, revoked, malformed, or invalid for other reasons.")

// Authenticate finds the live session for a bearer token. Unknown and
// expired tokens are the same error. Only the token's hash is looked up,
// and the stored hash is compared in constant time.
func (db *DB) Authenticate(ctx context.Context, token string) (Session, error) {
	unauthorized := errBadBearer
	if token == "" || len(token) > 512 {
		return Session{}, unauthorized
	}
	hash := secret.HashToken(token)
	var (
		s      Session
		stored []byte
		member *string
		role   *string
	)
	err := db.Pool.QueryRow(ctx, `SELECT s.id, s.token_hash, s.customer_id, s.member_id, m.role, c.organization_id,
			s.scopes, s.expires_at
		FROM sessions s JOIN customers c ON c.id = s.customer_id LEFT JOIN members m ON m.id = s.member_id
		WHERE s.token_hash = $1`, hash).Scan(&s.ID, &stored, &s.CustomerID, &member, &role, &s.OrganizationID, &s.Scopes, &s.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, unauthorized
	}
	if err != nil {
		return Session{}, err
	}
	if !secret.SameHash(stored, hash) || !time.Now().Before(s.ExpiresAt) {
		return Session{}, unauthorized
	}
	if member != nil {
		s.MemberID, s.MemberRole = *member, *role
	}
	return s, nil
}

// SessionLive reports whether a session exists and has not expired.
func (db *DB) SessionLive(ctx context.Context, id string) (bool, error) {
	var live bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND expires_at > now())`, id).Scan(&live)
	return live, err
}
