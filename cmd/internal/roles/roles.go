// Package roles builds seatd's roles from a configuration and the
// connections they share: the worker (consumer, outbox relay, requeuer and,
// when configured, the expiry sweeper), the mailer, the webhook sender and
// the HTTP ingress.
// It is the one place the services are wired together: `seatd` runs what
// it returns, and the end-to-end tests (cmd/seatdtest) run the same thing.
//
// It leaves to its caller where the connections come from (an embedded or
// remote NATS, a private or shared Postgres), the process's lifetime, and
// the order of shutdown.
package roles

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/mailer"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/webhook"
	"github.com/seatd/seatd/worker"
)

// Deps are the connections every role shares.
type Deps struct {
	DB   *storage.DB
	NC   *nats.Conn
	JS   jetstream.JetStream
	Keys secret.Keys
	Log  *slog.Logger
	// Templates render invitation emails and the claim page; nil: the
	// embedded ones. The caller loads them before any role starts, so a
	// broken SEATD_TEMPLATES stops seatd at once.
	Templates *invite.Templates
}

// Tuning holds the delays that are not deployment settings: zero values
// are the production defaults; tests shorten them.
type Tuning struct {
	WorkerBackoffBase, WorkerBackoffMax time.Duration // retry of a failed request
	RelayTick                           time.Duration // outbox relay's idle poll
	MailFetchWait                       time.Duration // mailer's pull wait
}

// Runner is one long-running part of a role.
type Runner struct {
	Name string
	Run  func(context.Context) error
}

// Settings are the seat rules' settings from the configuration.
func Settings(cfg *config.Config, keys secret.Keys) storage.Settings {
	return storage.Settings{Keys: keys, InvitationTTL: cfg.InvitationTTL}
}

// Worker is the worker role: the request consumer, the outbox relay that
// publishes what its commits wrote, the requeuer, and the expiry sweeper
// when SEATD_EXPIRED_INVITATIONS=release.
func Worker(cfg *config.Config, d Deps, tune Tuning) []Runner {
	written := make(chan struct{}, 1)
	w := worker.New(worker.Config{DB: d.DB, NC: d.NC, JS: d.JS, Settings: Settings(cfg, d.Keys), Log: d.Log,
		BatchSize: cfg.WorkerBatch, Concurrency: cfg.WorkerConcurrency, MaxDeliveries: cfg.MaxDeliveries, OutboxWritten: written,
		BackoffBase: tune.WorkerBackoffBase, BackoffMax: tune.WorkerBackoffMax})
	relay := &worker.Relay{DB: d.DB, JS: d.JS, Log: d.Log, OutboxWritten: written, Tick: tune.RelayTick}
	requeue := &worker.Requeuer{DB: d.DB, JS: d.JS, Log: d.Log, Grace: cfg.RequeueAfter}
	rs := []Runner{{"worker", w.Run}, {"relay", relay.Run}, {"requeue", requeue.Run}}
	if cfg.ExpiredInvitations == "release" {
		exp := &worker.Expirer{DB: d.DB, Log: d.Log, OutboxWritten: written}
		rs = append(rs, Runner{"expirer", exp.Run})
	}
	return rs
}

// Mailer is the mailer role: SMTP_URL's server, or the mail drop under the
// data directory.
func Mailer(cfg *config.Config, d Deps, tune Tuning) (Runner, error) {
	sender, desc, err := mailer.NewSender(cfg.SMTPURL, cfg.DataDir, d.Log)
	if err != nil {
		return Runner{}, err
	}
	d.Log.Info("mailer sends through " + desc)
	m := mailer.New(mailer.Config{DB: d.DB, JS: d.JS, Sender: sender, Keys: d.Keys,
		PublicURL: cfg.PublicURL, From: cfg.MailFrom, Templates: d.Templates, Log: d.Log,
		RetryBase: cfg.MailRetryBase, RetryMax: cfg.MailRetryMax, MaxAttempts: cfg.MailMaxAttempts,
		BatchSize: cfg.MailBatch, FetchWait: tune.MailFetchWait})
	return Runner{"mailer", m.Run}, nil
}

// Ingress is the HTTP edge.
func Ingress(cfg *config.Config, d Deps) (*ingress.Server, error) {
	return ingress.New(ingress.Config{DB: d.DB, NC: d.NC, JS: d.JS, Keys: d.Keys, Log: d.Log,
		SyncTimeout: cfg.SyncTimeout, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		AuthFailLimit: cfg.AuthFailLimit, AuthFailBurst: cfg.AuthFailBurst, BodyTimeout: cfg.BodyTimeout,
		Templates: d.Templates})
}

// Webhooks is the webhook sender: the seat-event consumer and the
// dispatcher of deliveries to the organizations' endpoints.
func Webhooks(cfg *config.Config, d Deps) (Runner, error) {
	r, err := webhook.New(webhook.Config{DB: d.DB, JS: d.JS, Keys: d.Keys, Log: d.Log,
		Timeout: cfg.WebhookTimeout, RetryBase: cfg.WebhookRetryBase, RetryMax: cfg.WebhookRetryMax,
		MaxAttempts: cfg.WebhookMaxAttempts, DisableAfter: cfg.WebhookDisableAfter, Concurrency: cfg.WebhookConcurrency})
	if err != nil {
		return Runner{}, err
	}
	return Runner{"webhooks", r.Run}, nil
}
