package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/seatd/seatd/storage/secret"
)

// SecretPrefix starts every endpoint secret, as in Polar.
const SecretPrefix = "whsec_"

// NewSecret returns a fresh endpoint secret in Polar's format: whsec_, 37
// random alphanumerics and their base62 CRC32 (secret.NewPrefixedToken).
func NewSecret() string { return secret.NewPrefixedToken(SecretPrefix) }

// ValidSecret reports whether s has the format of NewSecret and a correct
// checksum.
func ValidSecret(s string) bool { return secret.ValidPrefixedToken(SecretPrefix, s) }

// Sign returns the webhook-signature header for one delivery attempt:
// "v1," + base64(HMAC-SHA256(key, id "." ts "." body)). Like Polar, the
// HMAC key is the UTF-8 bytes of the whole secret, whsec_ included; Polar's
// SDK (validateEvent) accepts it as given, and a plain Standard Webhooks
// library accepts it when handed base64(secret) or told the key is raw.
func Sign(secret, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sealer encrypts endpoint secrets at rest with AES-256-GCM. Its key is
// derived from the deployment's secret key (SEATD_SECRET_KEY) for this
// purpose only, so every replica can open what another sealed, and a
// database dump alone reveals no secret.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the sealing key from keys.
func NewSealer(keys secret.Keys) (sealer Sealer, err error) {
	defer func() {
		if recover() != nil { // Keys without a secret
			err = errors.New("webhook: no secret key")
		}
	}()
	// Keys.Token is HMAC-SHA256(secret, purpose || 0 || nonce): 32 bytes,
	// unrelated to every other token derived from the same secret.
	key, err := base64.RawURLEncoding.DecodeString(keys.Token("webhook-endpoint-secret-seal", nil))
	if err != nil {
		return Sealer{}, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return Sealer{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return Sealer{}, err
	}
	return Sealer{aead: aead}, nil
}

// Seal encrypts secret for the endpoint id; the id is bound in as
// additional data, so a sealed secret copied to another row does not open.
func (s Sealer) Seal(endpointID, secret string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return s.aead.Seal(nonce, nonce, []byte(secret), []byte(endpointID))
}

// ErrUnsealable means a sealed secret does not open with this key: the
// secret key differs from the one that sealed it, or the row was altered.
var ErrUnsealable = errors.New("webhook: endpoint secret does not decrypt (is SEATD_SECRET_KEY the one it was created with?)")

// Open decrypts a secret sealed for endpointID.
func (s Sealer) Open(endpointID string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", ErrUnsealable
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(endpointID))
	if err != nil {
		return "", ErrUnsealable
	}
	return string(plain), nil
}
