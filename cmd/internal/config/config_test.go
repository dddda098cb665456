package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPrintMasksSecrets(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://seatd:dbsecret@db:5432/seatd")
	t.Setenv("SMTP_URL", "smtp://mailer:smtpsecret@smtp.example.com:587")
	t.Setenv("SEATD_SECRET_KEY", strings.Repeat("ab", 32))
	t.Setenv("SEATD_SYNC_TIMEOUT", "3s")
	c := Defaults()
	if err := c.Register(flag.NewFlagSet("t", flag.ContinueOnError)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"dbsecret", "smtpsecret", strings.Repeat("ab", 32)} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("configuration printout shows %q:\n%s", secret, out.String())
		}
	}
	for _, want := range []string{"postgres://seatd:*****@db:5432/seatd", "smtp.example.com:587", "3s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printout lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("SEATD_HTTP_ADDR", "127.0.0.1:9999")
	c := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := c.Register(fs); err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9999" {
		t.Errorf("env not applied: %s", c.HTTPAddr)
	}
	if err := fs.Parse([]string{"-http-addr", "127.0.0.1:7777", "-sync-timeout", "2s"}); err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:7777" || c.SyncTimeout != 2*time.Second {
		t.Errorf("flags not applied: %+v", c)
	}
}

func TestBadSettingsAreRefused(t *testing.T) {
	t.Setenv("SEATD_SYNC_TIMEOUT", "soon")
	c := Defaults()
	if err := c.Register(flag.NewFlagSet("t", flag.ContinueOnError)); err == nil {
		t.Error("an unparsable duration was accepted")
	}
	for _, mutate := range []func(*Config){
		func(c *Config) { c.ExpiredInvitations = "forget" },
		func(c *Config) { c.NATSFsync = "sometimes" },
		func(c *Config) { c.PublicURL = "ftp://x" },
		func(c *Config) { c.MailBatch = 0 },
	} {
		c := Defaults()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

func TestSecretIsCreatedOnceAndPrivate(t *testing.T) {
	dir := t.TempDir()
	c := Defaults()
	c.DataDir = dir
	a, err := c.Secret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Secret()
	if err != nil || !bytes.Equal(a, b) || len(a) < 32 {
		t.Fatalf("second read differs or is short: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, "secret.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret.key mode %v, %v", st.Mode(), err)
	}
	c.SecretKey = "too-short"
	if _, err := c.Secret(); err == nil {
		t.Error("a short SEATD_SECRET_KEY was accepted")
	}
}

// Processes starting together on a new data dir must agree on one key:
// none may read the key file before it is whole, and no temporary file is
// left behind.
func TestSecretCreatedConcurrentlyIsOneKey(t *testing.T) {
	for round := 0; round < 20; round++ {
		dir := t.TempDir()
		keys := make([][]byte, 16)
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				c := Defaults()
				c.DataDir = dir
				keys[i], errs[i] = c.Secret()
			})
		}
		wg.Wait()
		for i := range keys {
			if errs[i] != nil {
				t.Fatalf("round %d, process %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: process %d got another key", round, i)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "secret.key" {
			t.Fatalf("round %d: data dir holds %v, want only secret.key", round, entries)
		}
	}
}

// TestWebhookDefaultsArePolars: the webhook defaults are Polar's
// (../shared/spec/polar-api-facts.md §5; the README's Webhooks promises
// them as identical): at most WEBHOOK_MAX_RETRIES = 10 attempts, a 10 s
// timeout per attempt, dramatiq's backoff from 2 s (factor 2000 ms)
// capped at 20 min, and an endpoint disabled once its last
// WEBHOOK_FAILURE_THRESHOLD = 10 completed events failed. They hold with
// no environment and through the flags, so changing one fails here.
func TestWebhookDefaultsArePolars(t *testing.T) {
	for _, env := range []string{"SEATD_WEBHOOK_TIMEOUT", "SEATD_WEBHOOK_RETRY_BASE", "SEATD_WEBHOOK_RETRY_MAX",
		"SEATD_WEBHOOK_MAX_ATTEMPTS", "SEATD_WEBHOOK_DISABLE_AFTER"} {
		t.Setenv(env, "") // restored after the test
		if err := os.Unsetenv(env); err != nil {
			t.Fatal(err)
		}
	}
	c := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := c.Register(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"WebhookMaxAttempts", c.WebhookMaxAttempts, 10},
		{"WebhookTimeout", c.WebhookTimeout, 10 * time.Second},
		{"WebhookRetryBase", c.WebhookRetryBase, 2 * time.Second},
		{"WebhookRetryMax", c.WebhookRetryMax, 20 * time.Minute},
		{"WebhookDisableAfter", c.WebhookDisableAfter, 10},
	} {
		if d.got != d.want {
			t.Errorf("%s defaults to %v, want Polar's %v", d.name, d.got, d.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the defaults do not pass Validate: %v", err)
	}
}
