package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestRequestStreamLost: on one server the requests stream is persisted
// asynchronously (events/stream), so a power cut can take from its disk
// what it accepted in its last moments and the acks of what the workers
// applied. The request ledger, written before every publish, must make up
// for both. The test rolls the stream's store back to an older copy while
// the server is down, as a power cut would leave it: requests accepted
// since are gone from the stream (and from its dedupe window), requests
// applied since are back in it, unacknowledged. Every request the ingress
// answered 202 must still be applied exactly once.
func TestRequestStreamLost(t *testing.T) {
	r := newRig(t, storagetest.NewDatabase(t))
	tenants := provision(t, r.db, 4, 40)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + addr
	ing := r.start("ingress", "ingress", "SEATD_HTTP_ADDR="+addr, "SEATD_RATE_LIMIT=0")
	waitHTTP(t, ing, base)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// 50 distinct recipients per pool of 40: every pool ends exactly full.
	client := &http.Client{Timeout: 15 * time.Second}
	send := func(first, n int) []string {
		calls := make([]apiCall, n)
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < n; i += 8 {
					k := first + i
					calls[i] = postAssign(client, base, tenants[k%len(tenants)], fmt.Sprintf("user-%d@example.com", k/len(tenants)), true)
				}
			}()
		}
		wg.Wait()
		ids := make([]string, n)
		for i, c := range calls {
			if c.err != nil || c.status != http.StatusAccepted {
				t.Fatalf("assign %d: %d %s %v, want 202", first+i, c.status, c.body, c.err)
			}
			row, err := ledgerByKey(ctx, r.db, c)
			if err != nil {
				t.Fatalf("assign %d answered 202 but has no ledger row: %v", first+i, err)
			}
			ids[i] = row.id
		}
		return ids
	}
	inStream := func(want int) {
		t.Helper()
		waitFor(t, 20*time.Second, fmt.Sprintf("%d requests in the stream", want), func() (bool, string) {
			_, n, err := progress(ctx, r, nil)
			return err == nil && n == want, fmt.Sprintf("%d in the stream, err %v", n, err)
		})
	}

	// A: accepted and stored, nothing applied yet. The copy of the
	// stream's store taken now is what the disk will hold after the cut.
	idsA := send(0, 100)
	inStream(100)
	r.nats.Stop()
	streamDir := filepath.Join(r.nats.dir, "jetstream", "$G", "streams", events.RequestsStream)
	snapshot := filepath.Join(t.TempDir(), "snapshot")
	if err := os.CopyFS(snapshot, os.DirFS(streamDir)); err != nil {
		t.Fatalf("copying the stream's store: %v", err)
	}
	if err := r.nats.Start(); err != nil {
		t.Fatal(err)
	}

	// A is applied and acknowledged; B is accepted and stored, then the
	// power goes.
	worker := r.start("worker-1", "worker")
	waitSettled(t, r, idsA, 30*time.Second)
	worker.Signal(os.Interrupt)
	if code := worker.Wait(15 * time.Second); code != 0 {
		t.Fatalf("worker exited %d", code)
	}
	idsB := send(100, 100)
	inStream(100)
	r.nats.Stop()
	if err := os.RemoveAll(streamDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(streamDir, os.DirFS(snapshot)); err != nil {
		t.Fatalf("restoring the stream's store: %v", err)
	}
	if err := r.nats.Start(); err != nil {
		t.Fatal(err)
	}
	// The stream holds A again, applied but unacknowledged, and none of B.
	inStream(100)

	begin := time.Now()
	worker = r.start("worker-2", "worker", "SEATD_REQUEUE_AFTER=2s")
	all := append(idsA, idsB...)
	waitSettled(t, r, all, 45*time.Second)
	o := checkOutcome(t, r.db, all)
	checkPoolsFull(t, o, tenants)
	if o.replayed < 100 {
		t.Errorf("%d requests applied again from the ledger, want A's 100 (their acks were lost)", o.replayed)
	}
	if o.deadLettered != 0 {
		t.Errorf("%d requests dead-lettered", o.deadLettered)
	}
	if !strings.Contains(worker.Output(), "re-published queued requests missing from the stream") {
		t.Errorf("the requeuer did not re-publish B; worker log:\n%s", worker.Output())
	}
	t.Logf("SUMMARY request stream rolled back: %s (B's 100 re-published from the ledger) recovered in %s",
		o, time.Since(begin).Round(100*time.Millisecond))
}
