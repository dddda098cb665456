// Package secret derives, hashes and compares the tokens seatd hands out:
// invitation and session tokens are derived from SEATD_SECRET_KEY and a
// random nonce and only their SHA-256 is stored; credentials in Polar's
// format (webhook secrets, organization access tokens) are random, with a
// checksum, and an access token is stored as a hash keyed with
// SEATD_SECRET_KEY. Comparisons are constant time.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math/big"
	"strings"
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
	return base64.RawURLEncoding.EncodeToString(k.mac(purpose, nonce))
}

// mac is HMAC-SHA256(secret, purpose || 0 || data): one key per purpose,
// none of them related to another.
func (k Keys) mac(purpose string, data []byte) []byte {
	if len(k.secret) == 0 {
		panic("secret: Keys used without a secret")
	}
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// AccessTokenHash is what the database keeps of an organization access
// token: a keyed hash, as Polar keeps HMAC-SHA256(SECRET, token). Unlike a
// plain SHA-256, a copy of the database alone cannot test guesses offline;
// the price is that rotating the secret key invalidates every such token.
func (k Keys) AccessTokenHash(token string) []byte {
	return k.mac("organization-access-token", []byte(token))
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

const (
	alnum          = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomLen      = 37
	checksumLength = 6
)

// NewPrefixedToken returns a fresh credential in Polar's format (webhook
// secrets, organization access tokens): prefix, 37 random alphanumerics
// (about 220 bits), and the base62 CRC32 of those 37 characters,
// zero-padded to 6, so a mistyped token is recognised without a lookup.
func NewPrefixedToken(prefix string) string {
	var b strings.Builder
	b.WriteString(prefix)
	n := big.NewInt(int64(len(alnum)))
	random := make([]byte, randomLen)
	for i := range random {
		c, err := rand.Int(rand.Reader, n)
		if err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		random[i] = alnum[c.Int64()]
	}
	b.Write(random)
	b.WriteString(checksum(random))
	return b.String()
}

func checksum(random []byte) string {
	n := crc32.ChecksumIEEE(random)
	var out []byte
	for n > 0 {
		out = append([]byte{base62[n%62]}, out...)
		n /= 62
	}
	for len(out) < checksumLength {
		out = append([]byte{'0'}, out...)
	}
	return string(out)
}

// ValidPrefixedToken reports whether s has the format of
// NewPrefixedToken(prefix) and a correct checksum.
func ValidPrefixedToken(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != randomLen+checksumLength {
		return false
	}
	for i := range rest {
		if !strings.ContainsRune(alnum, rune(rest[i])) {
			return false
		}
	}
	return checksum([]byte(rest[:randomLen])) == rest[randomLen:]
}
