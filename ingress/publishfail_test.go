package ingress_test

import (
	"context"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
)

// TestPublishFailureIsAccepted: while JetStream cannot take a request (a
// stream electing a leader after its node died; here the stream is gone),
// the ingress retries for SEATD_SYNC_TIMEOUT, then answers 202 with the
// request queued in the ledger, not a failure, and publishes it in the
// background once JetStream is back. A retry with the same Idempotency-Key
// gets the same request, and the request is applied exactly once.
func TestPublishFailureIsAccepted(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1, SyncTimeout: time.Second})
	ten := e.Tenant(seatdtest.TenantOptions{})
	ctx := context.Background()
	if err := e.JS.DeleteStream(ctx, events.RequestsStream); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"subscription_id": ten.SubscriptionID, "email": "during-election@example.com"}
	start := time.Now()
	r := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "election-1")
	if r.Status != 202 {
		t.Fatalf("POST while the stream is away: %d %s, want 202", r.Status, r.Body)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("answered after %s: the ingress did not retry the publish", d)
	}
	id, _ := r.JSON(t)["request_id"].(string)
	if st := e.Do("GET", seatsPath+"/requests/"+id, ten.Token, nil).JSON(t)["status"]; st != "queued" {
		t.Errorf("request %s is %v, want queued", id, st)
	}
	again := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "election-1", "Prefer", "respond-async")
	if again.Status != 202 || again.JSON(t)["request_id"] != id {
		t.Errorf("retry with the same key: %d %s, want 202 for request %s", again.Status, again.Body, id)
	}

	// JetStream is back: the background publish delivers it.
	if err := stream.SetupStreams(ctx, e.JS, stream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	seatdtest.WaitFor(t, 15*time.Second, "the request published in the background", func() bool {
		s, err := e.JS.Stream(ctx, events.RequestsStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	e.StartWorker()
	e.WaitApplied(id)
	if n := e.SeatCount(); n != 1 {
		t.Errorf("%d seats, want 1", n)
	}
	final := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "election-1")
	if final.Status != 200 || final.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after it was applied: %d %s, want the replayed 200", final.Status, final.Body)
	}
}
