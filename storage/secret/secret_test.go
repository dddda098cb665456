package secret

import (
	"bytes"
	"crypto/sha256"
	"regexp"
	"testing"
)

// TestPrefixedToken: Polar's credential format, with checksums computed by
// Polar's own code (Python's zlib.crc32, base62, zfill(6)), and a typo is
// caught by the checksum.
func TestPrefixedToken(t *testing.T) {
	format := regexp.MustCompile(`^polar_oat_[A-Za-z0-9]{37}[0-9A-Za-z]{6}$`)
	seen := map[string]bool{}
	for range 200 {
		tok := NewPrefixedToken("polar_oat_")
		if !format.MatchString(tok) || !ValidPrefixedToken("polar_oat_", tok) {
			t.Fatalf("token %q does not have Polar's format", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q generated twice", tok)
		}
		seen[tok] = true
	}
	for random, sum := range map[string]string{
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJK": "4WQsSZ",
		"0000000000000000000000000000000000000": "3jnQlY",
	} {
		if got := checksum([]byte(random)); got != sum {
			t.Errorf("checksum(%s) = %s, want %s", random, got, sum)
		}
	}
	tok := NewPrefixedToken("polar_oat_")
	for name, bad := range map[string]string{
		"typo":             tok[:15] + string(rune(tok[15])^1) + tok[16:],
		"other prefix":     "whsec_" + tok[len("polar_oat_"):],
		"no prefix":        tok[len("polar_oat_"):],
		"truncated":        tok[:len(tok)-1],
		"non-alphanumeric": tok[:12] + "-" + tok[13:],
	} {
		if ValidPrefixedToken("polar_oat_", bad) {
			t.Errorf("%s: %q passes", name, bad)
		}
	}
}

// TestAccessTokenHash: keyed (another secret key gives another hash, and it
// is not the plain SHA-256 that sessions use), stable, and per token.
func TestAccessTokenHash(t *testing.T) {
	k, _ := NewKeys([]byte("0123456789abcdef0123456789abcdef"))
	other, _ := NewKeys([]byte("fedcba9876543210fedcba9876543210"))
	tok := NewPrefixedToken("polar_oat_")
	h := k.AccessTokenHash(tok)
	plain := sha256.Sum256([]byte(tok))
	switch {
	case len(h) != 32:
		t.Errorf("hash is %d bytes", len(h))
	case !bytes.Equal(h, k.AccessTokenHash(tok)):
		t.Error("the same token hashes differently")
	case bytes.Equal(h, other.AccessTokenHash(tok)):
		t.Error("another secret key gives the same hash")
	case bytes.Equal(h, plain[:]):
		t.Error("the hash is the token's plain SHA-256")
	case bytes.Equal(h, k.AccessTokenHash(NewPrefixedToken("polar_oat_"))):
		t.Error("two tokens share a hash")
	}
}
