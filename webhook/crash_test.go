package webhook

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
)

// The crash test runs a Runner in a child process, this test binary
// re-executed with childEnv set, so it can kill it with SIGKILL.
const (
	childEnv      = "SEATD_WEBHOOK_TEST_CHILD"
	childDBEnv    = "SEATD_WEBHOOK_TEST_DATABASE_URL"
	childNATSEnv  = "SEATD_WEBHOOK_TEST_NATS_URL"
	childKeyEnv   = "SEATD_WEBHOOK_TEST_SECRET_KEY"
	childTimeout  = 3 * time.Second
	childLeaseMgn = 200 * time.Millisecond
)

// runChild runs a Runner from the environment until SIGTERM.
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	db, err := storage.Open(ctx, os.Getenv(childDBEnv))
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	nc, err := stream.Connect(os.Getenv(childNATSEnv), "webhook-test-child")
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	key, _ := hex.DecodeString(os.Getenv(childKeyEnv))
	keys, err := secret.NewKeys(key)
	if err != nil {
		return fail(err)
	}
	r, err := New(Config{DB: db, JS: js, Keys: keys, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Timeout: childTimeout, LeaseMargin: childLeaseMgn, PollInterval: 50 * time.Millisecond, FetchWait: 500 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	if err := r.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// A Runner killed while the receiver holds its attempt loses nothing: once
// its lease runs out another Runner repeats the attempt, with the same
// webhook-id and body. Polar's at-least-once, made visible.
func TestKilledMidAttemptIsRepeated(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	rc.setRespond(func(h hit, n int) int {
		if n == 1 {
			return -60_000 // hold the first attempt until the sender goes away
		}
		return 200
	})
	ep, _ := b.endpoint(t, rc.srv.URL)
	ev := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, ev, "")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDBEnv+"="+b.dbURL, childNATSEnv+"="+b.nats,
		childKeyEnv+"="+hex.EncodeToString(testSecretKey))
	logFile, err := os.Create(t.TempDir() + "/child.log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }() // the child's log, for diagnosis only
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	checkFor(t, 20*time.Second, func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.counts[ev.Data.ID+" "+string(ev.Type)] == 0 {
			out, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("the child has not started its attempt; its output:\n%s", out)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	d := b.deliveryOf(t, ep.ID, ev.ID)
	if d.Status != "pending" || d.Attempts != 1 || len(d.AttemptLog) != 0 {
		t.Fatalf("after the kill: %+v, want pending with one unrecorded attempt", d)
	}

	cfg := b.config(t)
	cfg.Timeout, cfg.LeaseMargin = childTimeout, childLeaseMgn
	run(t, cfg)
	d = b.waitStatus(t, ep.ID, ev.ID, "succeeded", 20*time.Second)
	hits := rc.succeeded()
	if len(hits) != 1 || hits[0].id != d.ID {
		t.Fatalf("successful requests %+v, want one with webhook-id %s", hits, d.ID)
	}
	if first := rc.all()[0]; first.id != d.ID || !bytes.Equal(first.body, hits[0].body) {
		t.Errorf("the repeated attempt differs from the killed one: id %s vs %s", first.id, d.ID)
	}
	if waited := hits[0].at.Sub(killed); waited < childLeaseMgn {
		t.Errorf("repeated %v after the kill, before the lease ran out", waited)
	}
	if d.Attempts != 2 || len(d.AttemptLog) != 1 {
		t.Errorf("delivery %+v: want 2 attempts, 1 recorded", d)
	}
	t.Logf("SUMMARY webhook runner SIGKILLed mid-attempt: repeated %v after the kill with the same webhook-id; delivered once more, 0 lost",
		hits[0].at.Sub(killed).Round(10*time.Millisecond))
}
