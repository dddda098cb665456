package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage/pgcluster"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/telemetry"
)

// Database returns the URL of seatd's database: DATABASE_URL, else
// 127.0.0.1:5432 when it answers, else a private cluster under the data
// dir that stop shuts down.
func (c *Config) Database(ctx context.Context, log *slog.Logger) (string, func() error, error) {
	return pgcluster.Ensure(ctx, c.DatabaseURL, filepath.Join(c.DataDir, "postgres"), "seatd", log)
}

// NATS holds a connection to NATS and, when seatd runs one, the embedded
// server.
type NATS struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	URL      string
	shutdown func()
}

// Close drains the connection and stops an embedded server.
func (n *NATS) Close() {
	if n.Conn != nil {
		_ = n.Conn.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !n.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n.shutdown != nil {
		n.shutdown()
	}
}

// ConnectNATS is DialNATS, then stream setup (stream.WaitStreams) for at
// most 30 seconds: for commands that should give up rather than wait.
func (c *Config) ConnectNATS(ctx context.Context, name string, embed bool, log *slog.Logger) (*NATS, error) {
	out, err := c.DialNATS(ctx, name, embed, log)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := out.SetupStreams(sctx, c, stream.WaitOptions{Log: log}); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// SetupStreams waits for JetStream and sets up seatd's streams and
// consumers with c's replicas and ack wait, retrying until ctx ends.
func (n *NATS) SetupStreams(ctx context.Context, c *Config, opt stream.WaitOptions) error {
	return stream.WaitStreams(ctx, n.Conn, n.JS, stream.StreamConfig{Replicas: c.NATSReplicas, AckWait: c.AckWait}, opt)
}

// DialNATS connects to NATS_URL; without it, to the embedded server of
// a seatd already running on this data dir, or it starts one (embed=true)
// and records its URL in the data dir for seatctl and other roles. It does
// not wait for the server to answer: the connection retries in the
// background (see SetupStreams).
func (c *Config) DialNATS(ctx context.Context, name string, embed bool, log *slog.Logger) (*NATS, error) {
	out := &NATS{URL: c.NATSURL}
	urlFile := filepath.Join(c.DataDir, "nats.url")
	if out.URL == "" {
		if b, err := os.ReadFile(urlFile); err == nil {
			u := strings.TrimSpace(string(b))
			if nc, err := nats.Connect(u, nats.Timeout(time.Second)); err == nil {
				nc.Close()
				out.URL = u
			}
		}
	}
	var inProcess []nats.Option
	if out.URL == "" {
		if !embed {
			return nil, fmt.Errorf("no NATS: set NATS_URL, or start `seatd serve` with data dir %s", c.DataDir)
		}
		fsync, err := c.Fsync()
		if err != nil {
			return nil, err
		}
		srv, err := stream.StartServer(stream.ServerConfig{Port: -1, StoreDir: filepath.Join(c.DataDir, "nats"), Fsync: fsync})
		if err != nil {
			return nil, err
		}
		out.URL = srv.ClientURL()
		inProcess = append(inProcess, stream.InProcess(srv))
		out.shutdown = func() {
			_ = os.Remove(urlFile)
			srv.Shutdown()
			srv.WaitForShutdown()
		}
		if err := os.WriteFile(urlFile, []byte(out.URL+"\n"), 0o644); err != nil {
			out.shutdown()
			return nil, err
		}
		log.Info("embedded NATS JetStream server started", "url", out.URL, "store", filepath.Join(c.DataDir, "nats"), "fsync", c.NATSFsync)
	}
	nc, err := stream.Connect(out.URL, name, inProcess...)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	out.Conn = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		out.Close()
		return nil, err
	}
	out.JS = js
	return out, nil
}

// Keys returns the token keys from the secret.
func (c *Config) Keys() (secret.Keys, error) {
	key, err := c.Secret()
	if err != nil {
		return secret.Keys{}, fmt.Errorf("secret key: %w", err)
	}
	return secret.NewKeys(key)
}

// Logger returns the logger at the configured level: JSON lines on a
// stderr that is not a terminal, text on a terminal.
func (c *Config) Logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	return telemetry.NewLogger(os.Stderr, lvl)
}
