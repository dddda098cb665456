package webhook

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

func TestSecretFormat(t *testing.T) {
	format := regexp.MustCompile(`^whsec_[A-Za-z0-9]{37}[0-9A-Za-z]{6}$`)
	seen := map[string]bool{}
	for range 200 {
		s := NewSecret()
		if !format.MatchString(s) || !ValidSecret(s) {
			t.Fatalf("secret %q does not have Polar's format", s)
		}
		if seen[s] {
			t.Fatalf("secret %q generated twice", s)
		}
		seen[s] = true
	}
	// Checksums computed with Python's zlib.crc32 and Polar's base62
	// encoding (zfill(6)): ValidSecret holds exactly when the last six
	// characters are the checksum of the 37 before them.
	for random, sum := range map[string]string{
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJK": "4WQsSZ",
		"0000000000000000000000000000000000000": "3jnQlY",
	} {
		if !ValidSecret("whsec_" + random + sum) {
			t.Errorf("whsec_%s%s is not valid", random, sum)
		}
	}
	s := NewSecret()
	typo := s[:10] + string(rune(s[10])^1) + s[11:]
	if ValidSecret(typo) || ValidSecret(strings.TrimPrefix(s, "whsec_")) {
		t.Error("a mistyped secret passes the checksum")
	}
}

func TestSealer(t *testing.T) {
	keys, _ := secret.NewKeys(testSecretKey)
	other, _ := secret.NewKeys([]byte("another-secret-key-0123456789abcdef"))
	s, err := NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	so, _ := NewSealer(other)
	whsec, id := NewSecret(), uuid.NewString()
	sealed := s.Seal(id, whsec)
	if strings.Contains(string(sealed), whsec[6:20]) {
		t.Fatal("sealed secret contains the secret")
	}
	if got, err := s.Open(id, sealed); err != nil || got != whsec {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(uuid.NewString(), sealed); !errors.Is(err, ErrUnsealable) {
		t.Errorf("opened for another endpoint: %v", err)
	}
	if _, err := so.Open(id, sealed); !errors.Is(err, ErrUnsealable) {
		t.Errorf("opened with another secret key: %v", err)
	}
	if _, err := NewSealer(secret.Keys{}); err == nil {
		t.Error("a sealer without a secret key")
	}
}

// Bad input to the operator commands is refused with a clear error and
// creates nothing.
func TestAdminRefusesBadInput(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	all, _ := ParseEvents("")
	for _, c := range []struct {
		org, url string
		events   []string
		code     events.Code
		msg      string
	}{
		{b.org, "ftp://example.test/hook", all, events.CodeInvalid, "http:// or https://"},
		{b.org, "https:///nohost", all, events.CodeInvalid, "no host"},
		{b.org, "https://user:pw@example.test/", all, events.CodeInvalid, "credentials"},
		{b.org, "not a url at all", all, events.CodeInvalid, "http:// or https://"},
		{b.org, "https://example.test/", []string{"customer_seat.exploded"}, events.CodeInvalid, "unknown event type"},
		{b.org, "https://example.test/", nil, events.CodeInvalid, "at least one event type"},
		{b.org, "https://example.test/", []string{"customer_seat.assigned,customer_seat.revoked"}, events.CodeInvalid, "unknown event type"},
		{uuid.NewString(), "https://example.test/", all, events.CodeNotFound, "organization"},
		{"acme", "https://example.test/", all, events.CodeNotFound, "organization acme not found"},
	} {
		_, secret, err := b.admin.Create(ctx, c.org, c.url, c.events)
		if events.ErrorCode(err) != c.code || !strings.Contains(err.Error(), c.msg) || secret != "" {
			t.Errorf("Create(%q, %v): %v, want %s mentioning %q", c.url, c.events, err, c.code, c.msg)
		}
	}
	if _, err := ParseEvents("customer_seat.assigned, nope"); events.ErrorCode(err) != events.CodeInvalid {
		t.Errorf("ParseEvents: %v", err)
	}
	var n int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d endpoints after refused creates (%v)", n, err)
	}
	for name, err := range map[string]error{
		"enable":     func() error { _, err := b.admin.Enable(ctx, uuid.NewString()); return err }(),
		"rotate":     func() error { _, _, err := b.admin.RotateSecret(ctx, "nope"); return err }(),
		"delete":     b.admin.Delete(ctx, uuid.NewString()),
		"redeliver":  func() error { _, err := b.admin.Redeliver(ctx, uuid.NewString()); return err }(),
		"deliveries": func() error { _, err := b.admin.Deliveries(ctx, uuid.NewString(), "", 10); return err }(),
	} {
		if events.ErrorCode(err) != events.CodeNotFound {
			t.Errorf("%s of an unknown id: %v, want not found", name, err)
		}
	}
}

// Rotating a secret stores the new one, sealed, in place of the old (that
// retries are then signed with it: TestRotatedSecretSignsRetries); deleting
// an endpoint hides it and stops its deliveries but keeps its log.
func TestRotateAndDelete(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	ep, first := b.endpoint(t, "https://example.test/hook", events.SeatRevokedEvent)
	got, second, err := b.admin.RotateSecret(ctx, ep.ID)
	if err != nil || second == first || !ValidSecret(second) || got.ModifiedAt == nil {
		t.Fatalf("rotate: %+v %q %v", got, second, err)
	}
	var sealed []byte
	if err := b.db.Pool.QueryRow(ctx, `SELECT secret_sealed FROM webhook_endpoints WHERE id = $1`, ep.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if open, err := b.admin.Sealer.Open(ep.ID, sealed); err != nil || open != second {
		t.Errorf("stored secret after rotation is not the new one: %v", err)
	}
	list, err := b.admin.List(ctx, b.org)
	if err != nil || len(list) != 1 || list[0].Events[0] != "customer_seat.revoked" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := b.admin.Delete(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := b.admin.List(ctx, b.org); len(list) != 0 {
		t.Errorf("deleted endpoint still listed: %+v", list)
	}
	if err := b.admin.Delete(ctx, ep.ID); events.ErrorCode(err) != events.CodeNotFound {
		t.Errorf("second delete: %v", err)
	}
	if _, err := b.admin.Deliveries(ctx, ep.ID, "", 10); err != nil {
		t.Errorf("the delivery log of a deleted endpoint: %v", err)
	}
}
