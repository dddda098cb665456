package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/seatd/seatd/storage/storagetest"
)

// Promise 3 (nothing accepted is lost) and promise 2 (exactly-once effect)
// under faults: kill -9 of workers, a NATS restart and a Postgres restart,
// each while thousands of requests flow. Promise 1 (no oversell) is checked
// at the end of each.

// TestKill9Workers kills a worker process with SIGKILL every few hundred
// milliseconds, and starts a replacement, while two of them apply a steady
// stream of requests across pools that run out of seats.
func TestKill9Workers(t *testing.T) {
	n, pools, seats, minKills := 3000, 6, 420, 6
	if testing.Short() {
		n, pools, seats, minKills = 1200, 4, 250, 5
	}
	r := newRig(t, storagetest.NewDatabase(t))
	tenants := provision(t, r.db, pools, seats)
	reqs := assignLoad(tenants, n)

	begin := time.Now()
	workers := []*proc{r.start("worker-1", "worker"), r.start("worker-2", "worker")}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	published := make(chan publishResult, 1)
	// About 4.5s of publishing: the kills land while requests flow.
	go func() { published <- publishPaced(ctx, r.js, reqs, 100, 150*time.Millisecond) }()

	var (
		pub        publishResult
		publishing = true
		kills      int
		doneAt     []int // requests with an outcome at each kill
		heldAt     []int // requests held unacknowledged by the workers at each kill
	)
	for (publishing || kills < minKills) && kills < 30 {
		time.Sleep(time.Duration(300+rand.IntN(200)) * time.Millisecond) // deliberate fault timing
		victim := kills % len(workers)
		heldAt = append(heldAt, heldByWorkers(ctx, r.js))
		workers[victim].Kill()
		kills++
		workers[victim] = r.start(fmt.Sprintf("worker-%d", kills+2), "worker")
		done, _, _ := progress(ctx, r, ids(reqs))
		doneAt = append(doneAt, done)
		select {
		case pub = <-published:
			publishing = false
		default:
		}
	}
	if publishing {
		pub = <-published
	}
	if pub.err != nil {
		t.Fatal(pub.err)
	}
	waitSettled(t, r, ids(reqs), 45*time.Second)
	wall := time.Since(begin)

	o := checkOutcome(t, r.db, ids(reqs))
	checkPoolsFull(t, o, tenants)
	if o.deadLettered != 0 {
		t.Errorf("%d requests dead-lettered: a crash is not a reason to give up on a request", o.deadLettered)
	}
	t.Logf("at each kill: requests with an outcome %v, held unacknowledged by the workers %v", doneAt, heldAt)
	t.Logf("SUMMARY kill -9 workers: %s kills=%d (2 workers, SIGKILL every 300-500ms) wall=%s",
		o, kills, wall.Round(100*time.Millisecond))
}

// TestNATSRestart shuts the NATS server down while requests flow and
// starts it again on the same port and store a second later. The workers
// must carry on without being restarted, and every request JetStream
// acknowledged must be applied.
func TestNATSRestart(t *testing.T) {
	r := newRig(t, storagetest.NewDatabase(t))
	run := restartMidFlow(t, r, "NATS", func() error { r.nats.Stop(); return nil }, r.nats.Start)
	if run.o.deadLettered != 0 {
		t.Errorf("%d requests dead-lettered", run.o.deadLettered)
	}
	t.Logf("SUMMARY NATS restart: %s pub-acked=%d publish-retries=%d restarts=1 (down 1s, %d/%d applied before) wall=%s",
		run.o, run.pub.acked, run.pub.retries, run.doneBefore, run.n, run.wall.Round(100*time.Millisecond))
}

// TestPostgresRestart stops Postgres while requests flow and starts it
// again a second later. The workers must ride it out by themselves:
// transient errors are retried with backoff, never dead-lettered.
func TestPostgresRestart(t *testing.T) {
	pg := storagetest.NewServer(t)
	r := newRig(t, pg.URL())
	run := restartMidFlow(t, r, "Postgres", pg.Stop, pg.Start)
	if run.o.deadLettered != 0 || deadLetters(t, r.js) != 0 {
		t.Errorf("%d requests dead-lettered (%d in the dead-letter stream): a Postgres restart is transient",
			run.o.deadLettered, deadLetters(t, r.js))
	}
	t.Logf("SUMMARY Postgres restart: %s restarts=1 (down 1s, %d/%d applied before) wall=%s",
		run.o, run.doneBefore, run.n, run.wall.Round(100*time.Millisecond))
}

// restartRun is what restartMidFlow observed.
type restartRun struct {
	o          outcome
	pub        publishResult
	n          int
	doneBefore int
	wall       time.Duration
}

// restartMidFlow runs two worker processes under a paced load, takes what
// (NATS or Postgres) down with stop 0.7 s in, brings it back with start a
// second later, waits for every request to settle, and checks that the
// workers survived, every request has one outcome and every pool is full.
func restartMidFlow(t *testing.T, r *rig, what string, stop, start func() error) restartRun {
	t.Helper()
	n, pools, seats := 2000, 4, 420
	if testing.Short() {
		n, pools, seats = 1000, 4, 200
	}
	tenants := provision(t, r.db, pools, seats)
	reqs := assignLoad(tenants, n)

	begin := time.Now()
	workers := []*proc{r.start("worker-1", "worker"), r.start("worker-2", "worker")}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	published := make(chan publishResult, 1)
	go func() { published <- publishPaced(ctx, r.js, reqs, 100, 100*time.Millisecond) }()

	time.Sleep(700 * time.Millisecond) // deliberate fault timing: mid-flow
	doneBefore, _, _ := progress(ctx, r, ids(reqs))
	if err := stop(); err != nil {
		t.Fatalf("stopping %s: %v", what, err)
	}
	time.Sleep(time.Second)
	if err := start(); err != nil {
		t.Fatalf("restarting %s: %v", what, err)
	}
	pub := <-published
	if pub.err != nil {
		t.Fatal(pub.err)
	}
	waitSettled(t, r, ids(reqs), 45*time.Second)
	wall := time.Since(begin)

	for _, w := range workers {
		if !w.Running() {
			t.Errorf("%s exited after the %s restart", w.name, what)
		}
	}
	o := checkOutcome(t, r.db, ids(reqs))
	checkPoolsFull(t, o, tenants)
	return restartRun{o: o, pub: pub, n: n, doneBefore: doneBefore, wall: wall}
}
