// Package config is the configuration shared by seatd and seatctl: flags
// with environment fallbacks, defaults that work on one machine with no
// configuration at all, and how to reach (or start) Postgres and NATS from
// them. Both binaries resolve the same data dir to the same database and
// NATS server.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of seatd.
type Config struct {
	HTTPAddr           string
	HealthAddr         string
	DatabaseURL        string
	NATSURL            string
	DataDir            string
	SyncTimeout        time.Duration
	PublicURL          string
	SMTPURL            string
	MailFrom           string
	MailRetryBase      time.Duration
	MailRetryMax       time.Duration
	MailMaxAttempts    int
	MailBatch          int
	SecretKey          string
	InvitationTTL      time.Duration
	ExpiredInvitations string // keep | release
	NATSFsync          string // always | a duration such as 1s
	NATSReplicas       int
	AckWait            time.Duration
	RateLimit          float64
	RateBurst          int
	AuthFailLimit      float64
	AuthFailBurst      int
	BodyTimeout        time.Duration
	WorkerBatch        int
	WorkerConcurrency  int
	RequeueAfter       time.Duration
	MaxDeliveries      int
	LogLevel           string

	// Webhooks (package webhook).
	WebhookTimeout      time.Duration
	WebhookRetryBase    time.Duration
	WebhookRetryMax     time.Duration
	WebhookMaxAttempts  int
	WebhookDisableAfter int
	WebhookConcurrency  int
	Templates           string // directory overriding the embedded email and claim page templates
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		HTTPAddr:           "127.0.0.1:8080",
		DataDir:            "./.seatd",
		SyncTimeout:        10 * time.Second,
		PublicURL:          "http://127.0.0.1:8080",
		MailFrom:           "seatd <no-reply@seatd.localhost>",
		InvitationTTL:      24 * time.Hour,
		MailRetryBase:      2 * time.Second,
		MailRetryMax:       5 * time.Minute,
		MailMaxAttempts:    20,
		MailBatch:          256,
		ExpiredInvitations: "keep",
		NATSFsync:          "always",
		NATSReplicas:       1,
		AckWait:            30 * time.Second,
		RateLimit:          50,
		RateBurst:          100,
		AuthFailLimit:      2,
		AuthFailBurst:      30,
		BodyTimeout:        10 * time.Second,
		WorkerBatch:        512,
		WorkerConcurrency:  2,
		RequeueAfter:       time.Minute,
		MaxDeliveries:      10,
		LogLevel:           "info",

		WebhookTimeout:      10 * time.Second,
		WebhookRetryBase:    2 * time.Second,
		WebhookRetryMax:     20 * time.Minute,
		WebhookMaxAttempts:  10,
		WebhookDisableAfter: 10,
		WebhookConcurrency:  8,
	}
}

type setting struct {
	flag, env, usage string
	secret           bool
	ptr              any
}

func (c *Config) settings() []setting {
	return []setting{
		{"http-addr", "SEATD_HTTP_ADDR", "HTTP listen address", false, &c.HTTPAddr},
		{"health-addr", "SEATD_HEALTH_ADDR", "listen address for /healthz, /readyz and /metrics of the roles without the ingress (worker, mailer, webhooks; unset: none; the ingress serves them on SEATD_HTTP_ADDR)", false, &c.HealthAddr},
		{"database-url", "DATABASE_URL", "Postgres URL (unset: 127.0.0.1:5432 if it answers, else a private cluster in the data dir)", true, &c.DatabaseURL},
		{"nats-url", "NATS_URL", "NATS URL (unset: an embedded JetStream server in the data dir)", true, &c.NATSURL},
		{"data-dir", "SEATD_DATA_DIR", "directory for the embedded NATS store, a private Postgres, mail drops and the secret key", false, &c.DataDir},
		{"sync-timeout", "SEATD_SYNC_TIMEOUT", "how long a sync request waits for the worker before answering 202", false, &c.SyncTimeout},
		{"public-url", "SEATD_PUBLIC_URL", "base URL of claim links in invitation emails", false, &c.PublicURL},
		{"smtp-url", "SMTP_URL", "smtp://user:pass@host:port[?tls=starttls|none] or smtps://... (unset: write .eml files to <data dir>/mail)", true, &c.SMTPURL},
		{"mail-from", "SEATD_MAIL_FROM", "sender of invitation emails", false, &c.MailFrom},
		{"mail-retry-base", "SEATD_MAIL_RETRY_BASE", "first retry delay after a temporary SMTP failure (doubling)", false, &c.MailRetryBase},
		{"mail-retry-max", "SEATD_MAIL_RETRY_MAX", "longest retry delay after a temporary SMTP failure", false, &c.MailRetryMax},
		{"mail-max-attempts", "SEATD_MAIL_MAX_ATTEMPTS", "SMTP attempts before an invitation's delivery is recorded failed", false, &c.MailMaxAttempts},
		{"mail-batch", "SEATD_MAIL_BATCH", "invitations the mailer delivers together (at most)", false, &c.MailBatch},
		{"secret-key", "SEATD_SECRET_KEY", "secret (hex or base64, >= 32 bytes) tokens are derived from; shared by every replica (unset: <data dir>/secret.key)", true, &c.SecretKey},
		{"invitation-ttl", "SEATD_INVITATION_TTL", "how long an invitation link stays valid", false, &c.InvitationTTL},
		{"expired-invitations", "SEATD_EXPIRED_INVITATIONS", "keep (Polar's behaviour) or release (revoke expired pending seats, freeing them)", false, &c.ExpiredInvitations},
		{"nats-fsync", "SEATD_NATS_FSYNC", "embedded JetStream file store sync: always, or an interval such as 1s", false, &c.NATSFsync},
		{"nats-replicas", "SEATD_NATS_REPLICAS", "stream replicas (3 on a NATS cluster)", false, &c.NATSReplicas},
		{"ack-wait", "SEATD_ACK_WAIT", "how long a crashed worker holds a request before another gets it (mailer: twice this)", false, &c.AckWait},
		{"rate-limit", "SEATD_RATE_LIMIT", "requests per second per token (writes and reads each) and per client address (claims and claim lookups) (0: unlimited)", false, &c.RateLimit},
		{"rate-burst", "SEATD_RATE_BURST", "burst of requests per bucket", false, &c.RateBurst},
		{"auth-fail-limit", "SEATD_AUTH_FAIL_LIMIT", "requests with a bad bearer token per second per client address before 429 (negative: unlimited)", false, &c.AuthFailLimit},
		{"auth-fail-burst", "SEATD_AUTH_FAIL_BURST", "burst of requests with a bad bearer token per client address", false, &c.AuthFailBurst},
		{"body-timeout", "SEATD_BODY_TIMEOUT", "how long a request body may take to arrive before 408", false, &c.BodyTimeout},
		{"worker-batch", "SEATD_WORKER_BATCH", "requests applied per transaction", false, &c.WorkerBatch},
		{"worker-concurrency", "SEATD_WORKER_CONCURRENCY", "batches one worker process applies at once", false, &c.WorkerConcurrency},
		{"requeue-after", "SEATD_REQUEUE_AFTER", "how long a request may stay queued in the ledger, and older than the stream's oldest message, before the worker re-publishes it (the recovery time of a request the stream lost)", false, &c.RequeueAfter},
		{"max-deliveries", "SEATD_MAX_DELIVERIES", "deliveries before a failing request is dead-lettered", false, &c.MaxDeliveries},
		{"log-level", "SEATD_LOG_LEVEL", "debug, info, warn or error", false, &c.LogLevel},
		{"webhook-timeout", "SEATD_WEBHOOK_TIMEOUT", "how long one webhook attempt may take before it counts as failed", false, &c.WebhookTimeout},
		{"webhook-retry-base", "SEATD_WEBHOOK_RETRY_BASE", "delay after a webhook's first failed attempt (doubling)", false, &c.WebhookRetryBase},
		{"webhook-retry-max", "SEATD_WEBHOOK_RETRY_MAX", "longest delay between attempts of a webhook", false, &c.WebhookRetryMax},
		{"webhook-max-attempts", "SEATD_WEBHOOK_MAX_ATTEMPTS", "attempts before a webhook delivery is recorded failed", false, &c.WebhookMaxAttempts},
		{"webhook-disable-after", "SEATD_WEBHOOK_DISABLE_AFTER", "failed deliveries in a row after which an endpoint is disabled", false, &c.WebhookDisableAfter},
		{"webhook-concurrency", "SEATD_WEBHOOK_CONCURRENCY", "webhook attempts one process makes at once", false, &c.WebhookConcurrency},
		{"templates", "SEATD_TEMPLATES", "directory whose files (email.txt, email.html, page.html, style.css, claim.js) replace the embedded invitation email and claim page templates (unset: the embedded ones)", false, &c.Templates},
	}
}

// Register adds every setting to fs as a flag, with the environment
// variable (when set) as its default.
func (c *Config) Register(fs *flag.FlagSet) error {
	return c.register(fs, func(string) bool { return true })
}

// clientFlags are the settings a client of a running deployment (seatctl)
// takes as flags: where the database, NATS and the secret key are.
var clientFlags = map[string]bool{
	"database-url": true, "nats-url": true, "data-dir": true, "secret-key": true, "log-level": true,
}

// RegisterClient reads every setting from the environment, as seatd does,
// but adds only the client settings to fs, so a seatctl command's -h lists
// its own flags and where to find the deployment, not the server's tuning.
func (c *Config) RegisterClient(fs *flag.FlagSet) error {
	return c.register(fs, func(name string) bool { return clientFlags[name] })
}

func (c *Config) register(fs *flag.FlagSet, asFlag func(name string) bool) error {
	for _, s := range c.settings() {
		target := fs
		if !asFlag(s.flag) {
			// Still read from the environment, on a flag set nobody parses.
			target = flag.NewFlagSet("", flag.ContinueOnError)
		}
		env, set := os.LookupEnv(s.env)
		usage := fmt.Sprintf("%s (env %s)", s.usage, s.env)
		var err error
		switch p := s.ptr.(type) {
		case *string:
			if set {
				*p = env
			}
			target.StringVar(p, s.flag, *p, usage)
		case *time.Duration:
			if set {
				*p, err = time.ParseDuration(env)
			}
			target.DurationVar(p, s.flag, *p, usage)
		case *int:
			if set {
				*p, err = strconv.Atoi(env)
			}
			target.IntVar(p, s.flag, *p, usage)
		case *float64:
			if set {
				*p, err = strconv.ParseFloat(env, 64)
			}
			target.Float64Var(p, s.flag, *p, usage)
		}
		if err != nil {
			return fmt.Errorf("%s=%q: %v", s.env, env, err)
		}
	}
	return nil
}

// Validate checks values that flags cannot.
func (c *Config) Validate() error {
	switch c.ExpiredInvitations {
	case "keep", "release":
	default:
		return fmt.Errorf("SEATD_EXPIRED_INVITATIONS must be keep or release, not %q", c.ExpiredInvitations)
	}
	if _, err := c.Fsync(); err != nil {
		return err
	}
	if c.SyncTimeout <= 0 || c.InvitationTTL <= 0 {
		return errors.New("SEATD_SYNC_TIMEOUT and SEATD_INVITATION_TTL must be positive")
	}
	if c.WebhookTimeout <= 0 || c.WebhookRetryBase <= 0 || c.WebhookRetryMax < c.WebhookRetryBase {
		return errors.New("SEATD_WEBHOOK_TIMEOUT and SEATD_WEBHOOK_RETRY_BASE must be positive, SEATD_WEBHOOK_RETRY_MAX at least the base")
	}
	if c.WebhookMaxAttempts < 1 || c.WebhookDisableAfter < 1 || c.WebhookConcurrency < 1 {
		return errors.New("SEATD_WEBHOOK_MAX_ATTEMPTS, SEATD_WEBHOOK_DISABLE_AFTER and SEATD_WEBHOOK_CONCURRENCY must be at least 1")
	}
	if c.WorkerConcurrency < 1 || c.RequeueAfter <= 0 {
		return errors.New("SEATD_WORKER_CONCURRENCY must be at least 1 and SEATD_REQUEUE_AFTER positive")
	}
	if c.MailBatch < 1 {
		return errors.New("SEATD_MAIL_BATCH must be at least 1")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("SEATD_PUBLIC_URL must be an http(s) URL, not %q", c.PublicURL)
	}
	return nil
}

// Fsync is the embedded file store's sync interval; 0 means every write.
func (c *Config) Fsync() (time.Duration, error) {
	if c.NATSFsync == "always" || c.NATSFsync == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.NATSFsync)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("SEATD_NATS_FSYNC must be always or a positive duration, not %q", c.NATSFsync)
	}
	return d, nil
}

// Print writes the effective configuration, one setting a line, with
// secrets masked.
func (c *Config) Print(w io.Writer) error {
	lines := []string{"seatd configuration:"}
	for _, s := range c.settings() {
		v := fmt.Sprint(reflectValue(s.ptr))
		if s.secret && v != "" {
			v = Mask(v)
		}
		if v == "" {
			v = "(unset)"
		}
		lines = append(lines, fmt.Sprintf("  %-30s %s", s.env, v))
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

func reflectValue(p any) any {
	switch p := p.(type) {
	case *string:
		return *p
	case *time.Duration:
		return *p
	case *int:
		return *p
	case *float64:
		return *p
	}
	return ""
}

// Mask hides the password of a URL, or all of a value that is not a URL
// with credentials.
func Mask(v string) string {
	u, err := url.Parse(v)
	if err == nil && u.Scheme != "" && u.Host != "" {
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else if strings.HasPrefix(u.Scheme, "nats") || u.Scheme == "tls" || strings.HasPrefix(u.Scheme, "ws") {
				u.User = url.User("xxxxx") // a NATS URL's lone user is a token
			}
		}
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "secret") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return strings.ReplaceAll(u.String(), "xxxxx", "*****")
	}
	return "*****"
}

// Secret returns the token secret: SEATD_SECRET_KEY, or the key file in the
// data dir, created on first use (0600). Every replica of one deployment
// must share it.
func (c *Config) Secret() ([]byte, error) {
	if c.SecretKey != "" {
		return decodeKey(c.SecretKey)
	}
	path := filepath.Join(c.DataDir, "secret.key")
	if b, err := os.ReadFile(path); err == nil {
		return decodeKey(strings.TrimSpace(string(b)))
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Written whole to a file of its own, synced, then linked into place:
	// secret.key never exists half-written, so a process starting at the
	// same moment, or after a crash, reads a whole key or none. Of two
	// processes racing, the first link wins and the other reads its key.
	f, err := os.CreateTemp(c.DataDir, ".secret.key-*")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(f.Name()) }() // the link, not the temp name, keeps the key
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		_ = f.Close() // the write error says what went wrong
		return nil, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error says what went wrong
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
		b, err := os.ReadFile(path) // another process won the race
		if err != nil {
			return nil, err
		}
		return decodeKey(strings.TrimSpace(string(b)))
	} else if err != nil {
		return nil, err
	}
	return key, nil
}

func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) >= 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) >= 32 {
			return b, nil
		}
	}
	return nil, errors.New("secret key must be at least 32 bytes, hex or base64 encoded")
}
