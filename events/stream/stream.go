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

// SetupStreams creates or updates every stream and durable consumer. It is
// safe to call from many replicas at once.
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
	streams := []jetstream.StreamConfig{
		{Name: events.RequestsStream, Subjects: []string{events.RequestsSubject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
		{Name: events.MailStream, Subjects: []string{events.MailSubject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
		{Name: events.SeatEventsStream, Subjects: []string{events.SeatEventsSubjectPrefix + ".>"}, Retention: jetstream.LimitsPolicy,
			MaxAge: 30 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
		{Name: events.DeadLetterStream, Subjects: []string{events.DeadLetterSubject}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.DuplicateWindow},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
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
	for _, c := range consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg); err != nil {
			return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
		}
	}
	return nil
}

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
func Connect(url, name string) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1), // fail fast while disconnected instead of buffering
	)
}
