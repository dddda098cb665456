package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/telemetry"
)

// startup is what a role waits for before it can do its work. Until then
// its HTTP listener (the ingress's, or SEATD_HEALTH_ADDR of the others)
// answers /healthz with 200, so an orchestrator does not restart a process
// that is only waiting, and /readyz with 503 and what it waits for; every
// other path answers 503 with Retry-After. Once running, /readyz runs
// check (Postgres and NATS reachable).
type startup struct {
	mu      sync.Mutex
	waiting string // "" once running
	check   func(ctx context.Context) error
	next    http.Handler // the ingress, once running
}

func newStartup() *startup { return &startup{waiting: "starting"} }

// wait records what the process waits for now.
func (s *startup) wait(what string) {
	if what == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting != "" {
		s.waiting = what
	}
}

// running marks the process ready: next (may be nil) takes over every path
// but /healthz and /readyz when it is not the ingress.
func (s *startup) running(next http.Handler, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting, s.next, s.check = "", next, check
}

func (s *startup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	waiting, next, check := s.waiting, s.next, s.check
	s.mu.Unlock()
	if waiting == "" && next != nil {
		next.ServeHTTP(w, r) // the ingress has its own /healthz and /readyz
		return
	}
	switch {
	case r.URL.Path == "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case r.URL.Path == "/metrics":
		telemetry.Handler().ServeHTTP(w, r)
	case r.URL.Path == "/readyz" && waiting != "":
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting", "waiting_for": waiting})
	case r.URL.Path == "/readyz":
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if check != nil {
			if err := check(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case waiting != "":
		w.Header().Set("Retry-After", "1")
		ingress.WriteError(w, events.Errorf(events.CodeUnavailable, "seatd is starting: waiting for %s", waiting))
	default:
		ingress.WriteError(w, events.Errorf(events.CodeNotFound, "Not found"))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// migrateWhenUp applies the migrations, waiting (with backoff and a log
// line per retry) while Postgres cannot be reached: in compose and on
// Kubernetes, Postgres often starts after seatd. Any other error returns.
func migrateWhenUp(ctx context.Context, dbURL string, log *slog.Logger, st *startup) error {
	start := time.Now()
	for attempt := uint64(1); ; attempt++ {
		err := storage.Migrate(ctx, dbURL)
		var ce *pgconn.ConnectError
		if err == nil || !errors.As(err, &ce) || ctx.Err() != nil {
			return err
		}
		st.wait("Postgres")
		delay := stream.Backoff(250*time.Millisecond, 5*time.Second, attempt)
		log.Warn("waiting for Postgres", "err", err, "attempt", attempt, "retry_in", delay,
			"waited", time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for Postgres: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}
