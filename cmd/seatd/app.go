package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/cmd/internal/roles"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
)

var errHelp = errors.New("help requested")

// Main is the seatd program: ParseFlags, then Run until its context ends.
// End-to-end tests drive it the same way.
type Main struct {
	Role   string
	Config config.Config
	Log    *slog.Logger
	Out    io.Writer // where the effective configuration is printed

	// Set once Run has started the ingress (tests read it).
	mu       sync.Mutex
	httpAddr string
	ready    chan struct{}
}

// NewMain returns a Main with default configuration.
func NewMain() *Main {
	return &Main{Config: config.Defaults(), Out: os.Stderr, ready: make(chan struct{})}
}

// ParseFlags reads the role's flags with environment fallbacks.
func (m *Main) ParseFlags(role string, args []string) error {
	switch role {
	case "serve", "ingress", "worker", "mailer", "webhooks", "migrate":
	default:
		return fmt.Errorf("unknown role %q (want serve, ingress, worker, mailer, webhooks or migrate)", role)
	}
	m.Role = role
	fs := flag.NewFlagSet("seatd "+role, flag.ContinueOnError)
	if err := m.Config.Register(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if m.Log == nil {
		m.Log = m.Config.Logger()
	}
	return m.Config.Validate()
}

// HTTPAddr waits until the ingress listens and returns its address.
func (m *Main) HTTPAddr(ctx context.Context) (string, error) {
	select {
	case <-m.ready:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.httpAddr, nil
}

// Run runs the role until ctx is cancelled, then drains and returns nil.
//
// A role never exits because what it needs is not there yet: it waits for
// Postgres and for JetStream (a cluster that is still forming) with
// backoff, saying in the log what it waits for, and meanwhile its HTTP
// listener answers /healthz (200) and /readyz (503, what it waits for).
func (m *Main) Run(ctx context.Context) error {
	cfg := &m.Config
	// The printout is for the operator; seatd runs on without it.
	if err := cfg.Print(m.Out); err != nil {
		m.Log.Warn("printing the configuration", "err", err)
	}
	// Parsed before anything starts, by the roles that render them: a
	// broken template override stops seatd here, naming the file, instead
	// of failing an invitee later.
	var tmpl *invite.Templates
	switch m.Role {
	case "serve", "ingress", "mailer":
		t, err := invite.Load(cfg.Templates)
		if err != nil {
			return fmt.Errorf("SEATD_TEMPLATES: %w", err)
		}
		tmpl = t
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	all := m.Role == "serve"
	st := newStartup()

	// Roles run as goroutines; the first to fail stops the others. Shutdown
	// goes front to back: the HTTP server stops taking requests and waits
	// for the ones in flight, which need the worker to answer them; only
	// then do the background roles (worker, relay, mailer) drain and stop.
	front, stopFront := context.WithCancel(ctx)
	defer stopFront()
	back, stopBack := context.WithCancel(context.Background())
	defer stopBack()
	var frontWG, backWG sync.WaitGroup
	defer func() { stopFront(); frontWG.Wait() }() // on an early return: stop listening
	errc := make(chan error, 8)
	start := func(wg *sync.WaitGroup, rctx context.Context, name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(rctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				stopFront()
				stopBack()
			}
		}()
	}
	background := func(name string, run func(context.Context) error) { start(&backWG, back, name, run) }

	// Listen before anything else, so that health checks answer while the
	// role waits for its dependencies.
	listen := cfg.HealthAddr
	if all || m.Role == "ingress" {
		listen = cfg.HTTPAddr
	} else if m.Role == "migrate" {
		listen = ""
	}
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		hs := ingress.NewHTTPServer(st, cfg.SyncTimeout, m.Log)
		m.mu.Lock()
		m.httpAddr = ln.Addr().String()
		m.mu.Unlock()
		start(&frontWG, front, "http", func(ctx context.Context) error {
			shut := make(chan struct{})
			go func() {
				defer close(shut)
				<-ctx.Done()
				// Stop accepting; requests in flight get their answers
				// (at worst a 202 after SEATD_SYNC_TIMEOUT).
				sctx, cancel := context.WithTimeout(context.Background(), cfg.SyncTimeout+5*time.Second)
				defer cancel()
				_ = hs.Shutdown(sctx)
			}()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			<-shut // Serve returns at once; Shutdown waits for the handlers
			return nil
		})
		m.Log.Info("listening: /healthz answers now, /readyz once the role is running", "addr", m.httpAddr)
	}
	// stopped ends a start-up that ctx interrupted: a clean stop, not an error.
	stopped := func(err error) error {
		if ctx.Err() != nil {
			m.Log.Info("seatd stopped while starting", "waiting_for", err)
			return nil
		}
		return err
	}

	st.wait("Postgres")
	dbURL, stopDB, err := cfg.Database(ctx, m.Log)
	if err != nil {
		return stopped(err)
	}
	defer func() {
		if err := stopDB(); err != nil {
			m.Log.Warn("stopping private postgres", "err", err)
		}
	}()
	if err := migrateWhenUp(ctx, dbURL, m.Log, st); err != nil {
		return stopped(err)
	}
	if m.Role == "migrate" {
		m.Log.Info("migrations applied")
		return nil
	}
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		return stopped(err)
	}
	defer db.Close()
	keys, err := cfg.Keys()
	if err != nil {
		return err
	}
	st.wait("a NATS connection")
	nc, err := cfg.DialNATS(ctx, "seatd-"+m.Role, true, m.Log)
	if err != nil {
		return stopped(err)
	}
	defer nc.Close()
	if err := nc.SetupStreams(ctx, cfg, stream.WaitOptions{Log: m.Log, Waiting: st.wait}); err != nil {
		return stopped(err)
	}
	stopObserving, err := m.observe(ctx, db, nc)
	if err != nil {
		return err
	}
	defer stopObserving()

	deps := roles.Deps{DB: db, NC: nc.Conn, JS: nc.JS, Keys: keys, Log: m.Log, Templates: tmpl}
	if all || m.Role == "worker" {
		for _, r := range roles.Worker(cfg, deps, roles.Tuning{}) {
			background(r.Name, r.Run)
		}
	}
	if all || m.Role == "mailer" {
		r, err := roles.Mailer(cfg, deps, roles.Tuning{})
		if err != nil {
			return err
		}
		background(r.Name, r.Run)
	}
	if all || m.Role == "webhooks" {
		r, err := roles.Webhooks(cfg, deps)
		if err != nil {
			return err
		}
		background(r.Name, r.Run)
	}
	if all || m.Role == "ingress" {
		srv, err := roles.Ingress(cfg, deps)
		if err != nil {
			return err
		}
		defer srv.Close()
		st.running(srv, nil)
		m.Log.Info("ingress listening", "addr", m.httpAddr)
	} else {
		st.running(nil, func(ctx context.Context) error {
			if err := db.Pool.Ping(ctx); err != nil {
				return errors.New("database unavailable")
			}
			if !nc.Conn.IsConnected() {
				return errors.New("nats unavailable")
			}
			return nil
		})
	}
	close(m.ready)
	m.Log.Info("seatd running", "role", m.Role)
	<-front.Done()
	frontWG.Wait()
	stopBack()
	backWG.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	m.Log.Info("seatd stopped cleanly")
	return nil
}
