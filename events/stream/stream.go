// Package stream is seatd's use of NATS JetStream: the streams and durable
// consumers (SetupStreams), the embedded server for one machine and tests
// (StartServer), the connection settings every role uses (Connect), and the
// retry backoff of the stream consumers. The names of subjects and streams
// are vocabulary and live in package events.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seatd/seatd/events"
)

// StreamConfig tunes the streams for a deployment.
type StreamConfig struct {
	Replicas        int           // 1 on one machine, 3 on a cluster
	DuplicateWindow time.Duration // dedupe window for Nats-Msg-Id; default 10m
	// AckWait is how long a worker may hold a request before JetStream
	// redelivers it to another worker (the recovery time after a crash);
	// default 30s. The mailer's is twice that, as an SMTP exchange can be slow.
	AckWait time.Duration
}

// SetupStreams creates or updates every stream and durable consumer, one
// attempt each; it raises a stream's replicas to cfg.Replicas but never
// lowers them. Replicas starting together may all call it: a create that
// loses the race to another replica ("stream name already in use",
// "consumer already exists") is settled by updating what the winner made.
// On a cluster that is still forming, use WaitStreams, which retries.
func SetupStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	// The requests stream is written and fsynced in the background on one
	// server (AsyncPersistMode): the request ledger in Postgres, written
	// before the publish, is what makes a request durable, and the
	// worker's requeuer re-publishes what a power cut took from the stream.
	// That takes an fsync out of every accept and every ack. The mail and
	// seat-event streams keep the server's fsync policy: the outbox rows
	// behind their messages are gone once published. On a cluster every
	// stream is replicated instead (JetStream refuses async persistence
	// there), even by a process asking for one replica, which would
	// otherwise make a stream the others could not raise.
	requestsPersist := jetstream.DefaultPersistMode
	if cfg.Replicas == 1 && js.Conn().ConnectedClusterName() == "" {
		requestsPersist = jetstream.AsyncPersistMode
	}
	streams := []jetstream.StreamConfig{
		{Name: events.RequestsStream, Subjects: []string{events.RequestsSubject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow, PersistMode: requestsPersist},
		{Name: events.MailStream, Subjects: []string{events.MailSubject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
		{Name: events.SeatEventsStream, Subjects: []string{events.SeatEventsSubjectPrefix + ".>"}, Retention: jetstream.LimitsPolicy,
			MaxAge: 30 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
		{Name: events.DeadLetterStream, Subjects: []string{events.DeadLetterSubject}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
	}
	// Streams, then consumers, are set up in parallel: on a cluster each
	// new stream waits for its own leader election (seconds), so one after
	// another would multiply that wait by four.
	err := parallel(len(streams), func(i int) error {
		sc := streams[i]
		// Never lower a stream's replicas: a process with the default
		// SEATD_NATS_REPLICAS=1 (a seatctl run, a replica missing the
		// setting) must not strip a cluster's copies. Raising them works.
		if s, err := js.Stream(ctx, sc.Name); err == nil {
			have := s.CachedInfo().Config
			if have.Replicas > sc.Replicas {
				sc.Replicas = have.Replicas
			}
			// JetStream cannot change a stream's persist mode: a stream
			// made before (or by a server that ignores the setting) keeps
			// its own. Only replicating an async one is impossible.
			if have.PersistMode == jetstream.AsyncPersistMode && sc.Replicas > 1 {
				return fmt.Errorf("stream %s: %w; delete it (nats stream rm %s) and start again: "+
					"the request ledger re-publishes what it held", sc.Name, errAsyncNotReplicable, sc.Name)
			}
			sc.PersistMode = have.PersistMode
		}
		_, err := js.CreateOrUpdateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another replica created it between our update and create.
			_, err = js.UpdateStream(ctx, sc)
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{events.RequestsStream, jetstream.ConsumerConfig{Durable: events.WorkerConsumer, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: cfg.AckWait, MaxDeliver: -1, MaxAckPending: 20000}},
		{events.MailStream, jetstream.ConsumerConfig{Durable: events.MailerConsumer, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: 2 * cfg.AckWait, MaxDeliver: -1, MaxAckPending: 1000}},
	}
	return parallel(len(consumers), func(i int) error {
		c := consumers[i]
		_, err := js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			_, err = js.UpdateConsumer(ctx, c.stream, c.cfg)
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
		}
		return nil
	})
}

// parallel runs f(0..n-1) at once and returns the first error by index.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitOptions tunes WaitStreams.
type WaitOptions struct {
	Log *slog.Logger
	// Waiting, when set, is told what setup waits for before each retry
	// ("a NATS connection", "JetStream", ...), and "" once it is done; the
	// ingress's /readyz reports it.
	Waiting func(what string)
	// Attempt bounds one attempt (default 10s; the first ones get 2s, 4s,
	// ...); MaxDelay the pause between
	// attempts, which starts at 250ms and doubles (default 5s).
	Attempt, MaxDelay time.Duration
}

// WaitStreams waits for a NATS connection and for JetStream to answer, then
// runs SetupStreams, and retries all of it with backoff until it succeeds
// or ctx ends. A cluster that is still forming (no meta leader yet, peers
// not yet known, a stream leader being elected, an API request timing out)
// is something to wait for, not a reason to exit: each retry logs what it
// waits for. Only a configuration JetStream will never accept (replicas > 1
// on a server that is not clustered) returns at once.
func WaitStreams(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg StreamConfig, opt WaitOptions) error {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.Attempt <= 0 {
		opt.Attempt = 10 * time.Second
	}
	if opt.MaxDelay <= 0 {
		opt.MaxDelay = 5 * time.Second
	}
	waiting := func(what string) {
		if opt.Waiting != nil {
			opt.Waiting(what)
		}
	}
	start := time.Now()
	for attempt := uint64(1); ; attempt++ {
		// The first attempts are short: on a forming cluster a create that
		// races another replica's may get no answer at all, and the next
		// attempt finds the stream made. Later ones allow a slow cluster time.
		timeout := min(opt.Attempt, time.Duration(attempt)*2*time.Second)
		what, err := setupAttempt(ctx, nc, js, cfg, timeout)
		if err == nil {
			if attempt > 1 {
				log.Info("JetStream streams ready", "after", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			}
			waiting("")
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
		if errors.Is(err, errAsyncNotReplicable) {
			return err
		}
		if isPermanentSetupError(err) {
			return fmt.Errorf("%w (SEATD_NATS_REPLICAS=%d needs a NATS cluster with at least that many JetStream servers)", err, cfg.Replicas)
		}
		waiting(what)
		delay := Backoff(250*time.Millisecond, opt.MaxDelay, attempt)
		delay += time.Duration(rand.Int64N(int64(delay/4) + 1)) // replicas starting together spread out
		log.Warn("waiting for "+what, "err", err, "attempt", attempt, "retry_in", delay.Round(time.Millisecond),
			"waited", time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// setupAttempt is one try of WaitStreams; what names the step that failed.
func setupAttempt(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg StreamConfig, timeout time.Duration) (what string, err error) {
	if nc != nil && !nc.IsConnected() {
		return "a NATS connection", fmt.Errorf("nats: %s", nc.Status())
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// AccountInfo answers only once JetStream is up, and on a cluster
	// once a meta leader is elected.
	if _, err := js.AccountInfo(actx); err != nil {
		return "JetStream", err
	}
	if err := SetupStreams(actx, js, cfg); err != nil {
		return fmt.Sprintf("JetStream streams (%d replicas)", max(cfg.Replicas, 1)), err
	}
	return "", nil
}

// errAsyncNotReplicable: a stream made on one server, persisted
// asynchronously, asked for replicas.
var errAsyncNotReplicable = errors.New("it is persisted asynchronously, which JetStream cannot replicate")

// isPermanentSetupError reports an error that waiting cannot cure.
func isPermanentSetupError(err error) bool {
	var je jetstream.JetStreamError
	return errors.As(err, &je) && je.APIError() != nil && je.APIError().ErrorCode == jsErrCodeReplicasNotSupported
}

// jsErrCodeReplicasNotSupported is NATS's JSStreamReplicasNotSupportedErr:
// "replicas > 1 not supported in non-clustered mode".
const jsErrCodeReplicasNotSupported jetstream.ErrorCode = 10074

// ServerConfig configures an embedded NATS server.
type ServerConfig struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port
	StoreDir string // JetStream file store
	// Fsync is the file store's durability: 0 or negative means fsync every
	// write (SyncAlways); a positive duration syncs at that interval.
	Fsync time.Duration
}

// StartServer runs an embedded NATS server with JetStream and waits until
// it accepts connections.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	opts := &server.Options{
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         4 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Fsync > 0 {
		opts.SyncInterval = cfg.Fsync
	} else {
		opts.SyncAlways = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server: not ready after 10s")
	}
	return s, nil
}

// Connect dials NATS with settings suited to a long-running service: it
// reconnects forever, so a NATS restart never needs a restart of ours.
// Extra options come last (InProcess, for an embedded server).
func Connect(url, name string, extra ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1), // fail fast while disconnected instead of buffering
	}, extra...)...)
}

// InProcess connects to an embedded server through memory instead of a
// loopback socket: every publish, delivery and ack of a `seatd serve`
// saves its system calls.
func InProcess(srv *server.Server) nats.Option { return nats.InProcessServer(srv) }
