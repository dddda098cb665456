package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/worker"
)

// TestRequeueLostMessage: a request the ledger holds as queued but the
// stream lost (a power cut inside the fsync interval, or an ingress that
// died between recording and publishing) is re-published and applied once.
func TestRequeueLostMessage(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	ctx := context.Background()
	lost := assignRequest(ten, "lost@example.com")
	lost.SubmittedAt = time.Now().Add(-time.Minute).UTC()
	if _, err := e.DB.Submit(ctx, storage.Submission{Request: lost}); err != nil {
		t.Fatal(err)
	}
	// A request still waiting in the stream must not be touched: it is
	// younger than the oldest message there.
	ctxRun, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &worker.Requeuer{DB: e.DB, JS: e.JS, Log: e.Log, Interval: 50 * time.Millisecond, Grace: 10 * time.Second}
	ran := make(chan error, 1)
	go func() { ran <- q.Run(ctxRun) }()
	// Stop the requeuer before the environment goes, and fail on its error.
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Requeuer.Run: %v", err)
		}
	}()
	e.WaitApplied(lost.ID)
	time.Sleep(200 * time.Millisecond) // a few more sweeps
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats, want 1", n)
	}
	var deliveries int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT deliveries FROM requests WHERE id = $1`, lost.ID).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	if deliveries != 1 {
		t.Errorf("applied %d times, want 1", deliveries)
	}
}
