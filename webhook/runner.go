package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
)

// Config is what a Runner needs. DB, JS and Keys are required; the rest
// default to Polar's behaviour.
type Config struct {
	DB   *storage.DB
	JS   jetstream.JetStream
	Keys secret.Keys // the deployment's secret key: endpoint secrets are sealed under it
	Log  *slog.Logger

	// Timeout bounds one HTTP attempt, connecting included; default 10s.
	Timeout time.Duration
	// RetryBase is the delay after a delivery's first failed attempt; it
	// doubles with each attempt up to RetryMax. Defaults 2s and 20m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAttempts is the number of attempts after which a delivery is
	// recorded failed; default 10.
	MaxAttempts int
	// DisableAfter disables an endpoint when its last DisableAfter
	// completed deliveries since it was (re-)enabled all failed; default 10.
	DisableAfter int
	// Concurrency is the number of HTTP attempts one Runner makes at
	// once; default 8.
	Concurrency int
	// OrderGuard is how long a delivery waits for its seat's earlier
	// events to arrive from the stream before it is sent regardless (the
	// earlier events may predate the stream's retention); default 1m.
	OrderGuard time.Duration
	// PollInterval is how often a Runner looks for due deliveries when
	// nothing told it of new ones (retries, other replicas' events);
	// default 1s.
	PollInterval time.Duration
	// LeaseMargin is added to twice Timeout for the lease a Runner takes
	// on a delivery it claims: a Runner that dies mid-attempt holds the
	// delivery for that long; default 30s.
	LeaseMargin time.Duration
	// FetchWait bounds one pull request on the stream; default 5s.
	FetchWait time.Duration
	// Client sends the requests; default an http.Client with Timeout that
	// follows no redirects (a 3xx is a failure, as in Polar).
	Client *http.Client
}

// Runner delivers seat events as webhooks: it ingests them from the
// stream and sends the deliveries that are due. Any number of Runners may
// run on one database and stream.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	sealer Sealer
	pokes  chan struct{}
}

// New returns a Runner for cfg with defaults filled in.
func New(cfg Config) (*Runner, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, 10*time.Second)
	def(&cfg.RetryBase, 2*time.Second)
	def(&cfg.RetryMax, 20*time.Minute)
	def(&cfg.OrderGuard, time.Minute)
	def(&cfg.PollInterval, time.Second)
	def(&cfg.FetchWait, 5*time.Second)
	def(&cfg.LeaseMargin, 30*time.Second)
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = 10
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	switch {
	case cfg.DB == nil:
		return nil, errors.New("webhooks: no database")
	case cfg.JS == nil:
		return nil, errors.New("webhooks: no JetStream")
	}
	sealer, err := NewSealer(cfg.Keys)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: cfg.Log.With("role", "webhooks"), sealer: sealer, pokes: make(chan struct{}, 1)}, nil
}

// Run ingests and delivers until ctx is cancelled, then finishes the
// attempts in flight and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	cons, err := r.consumer(ctx)
	if err != nil || cons == nil {
		return err
	}
	r.log.Info("webhooks started", "timeout", r.cfg.Timeout, "max_attempts", r.cfg.MaxAttempts,
		"disable_after", r.cfg.DisableAfter, "concurrency", r.cfg.Concurrency)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = r.runIngest(ctx, cons)
	}()
	r.dispatch(ctx)
	wg.Wait()
	return nil
}

// consumer sets up the durable consumer, waiting for NATS if needed.
func (r *Runner) consumer(ctx context.Context) (jetstream.Consumer, error) {
	for {
		cons, err := SetupConsumer(ctx, r.cfg.JS, 0)
		if err == nil {
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, errors.New("webhooks: stream " + events.SeatEventsStream + " not found (run stream.SetupStreams first)")
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		r.log.Warn("waiting for JetStream", "error", err)
		sleep(ctx, time.Second)
	}
}

// poke tells the dispatcher that deliveries may be due.
func (r *Runner) poke() {
	select {
	case r.pokes <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
