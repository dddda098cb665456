package webhook

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
)

// BenchmarkDeliver measures events per second from the stream to a local
// receiver that answers at once: b.N events over b.N/3 seats (each
// assigned, claimed, revoked, so per-seat order is in play), one endpoint,
// one Runner with the default concurrency.
//
//	go test -run '^$' -bench Deliver -benchtime 3000x ./webhook/
func BenchmarkDeliver(b *testing.B) {
	bt := setup(b)
	rc := newReceiver(b)
	bt.endpoint(b, rc.srv.URL)
	cfg := bt.config(b)
	cfg.Log = testLogger(b)
	run(b, cfg)
	var evs []events.SeatEvent
	for len(evs) < b.N {
		seat := uuid.NewString()
		for v, typ := range EventTypes {
			if len(evs) < b.N {
				evs = append(evs, bt.seatEvent(bt.sub, seat, v+1, typ))
			}
		}
	}
	b.ResetTimer()
	start := time.Now()
	for _, ev := range evs {
		bt.publish(b, ev, "")
	}
	published := time.Since(start)
	var ingested time.Duration
	checkFor(b, 10*time.Minute, func() error {
		if ingested == 0 {
			var n int
			if err := bt.db.Pool.QueryRow(b.Context(), `SELECT count(*) FROM webhook_events`).Scan(&n); err == nil && n == b.N {
				ingested = time.Since(start)
			}
		}
		if n := len(rc.succeeded()); n < b.N {
			return fmt.Errorf("%d of %d delivered", n, b.N)
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "webhooks/s")
	b.ReportMetric(published.Seconds(), "s-published")
	b.ReportMetric(ingested.Seconds(), "s-ingested")
}
