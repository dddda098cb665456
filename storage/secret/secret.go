// Package secret derives, hashes and compares the tokens seatd hands out:
// invitation and session tokens are derived from SEATD_SECRET_KEY and a
// random nonce, only their SHA-256 is stored, and comparisons are constant
// time.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
)

// Keys derives the tokens seatd hands out but never stores. A token is
// HMAC-SHA256(secret, purpose || nonce), where the 32-byte nonce is random;
// the database keeps only SHA-256(token). Deriving rather than storing lets
// the mailer rebuild an invitation link for every delivery attempt (so a
// retried email carries the same working link) and lets an idempotent replay
// of a claim return the same session token, without either token existing
// in clear in Postgres, JetStream or a log.
type Keys struct {
	secret []byte
}

// NewKeys wraps a secret of at least 32 bytes.
func NewKeys(secret []byte) (Keys, error) {
	if len(secret) < 32 {
		return Keys{}, errors.New("secret key must be at least 32 bytes")
	}
	return Keys{secret: append([]byte(nil), secret...)}, nil
}

// IsZero reports whether k holds no secret (a zero Keys derives nothing).
func (k Keys) IsZero() bool { return len(k.secret) == 0 }

// Token derives the token for purpose and nonce.
func (k Keys) Token(purpose string, nonce []byte) string {
	if len(k.secret) == 0 {
		panic("secret: Keys used without a secret")
	}
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(nonce)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// InvitationToken is the claim token of the invitation with this nonce.
func (k Keys) InvitationToken(nonce []byte) string { return k.Token("invitation", nonce) }

// SessionToken is the session token created by the claim request id.
func (k Keys) SessionToken(requestID string) string {
	return k.Token("claim-session", []byte(requestID))
}

// NewNonce returns 32 random bytes.
func NewNonce() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

// NewRandomToken returns a fresh random token (256 bits, base64url) for
// sessions created by an operator.
func NewRandomToken() string { return base64.RawURLEncoding.EncodeToString(NewNonce()) }

// HashToken is what the database stores for a token.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// HashTokenHex is HashToken in hex, as carried by claim requests.
func HashTokenHex(token string) string { return hex.EncodeToString(HashToken(token)) }

// SameHash compares two hashes in constant time.
func SameHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
