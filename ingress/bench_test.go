package ingress_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress"
)

// BenchmarkWorkerThroughput measures how fast the worker applies a backlog
// of assign requests (queue → Postgres), by batch size and worker count.
//
//	go test -run '^$' -bench WorkerThroughput -benchtime 1x ./cmd/internal/ingress/
func BenchmarkWorkerThroughput(b *testing.B) {
	const requests, pools = 5000, 50
	for _, c := range []struct{ batch, workers int }{{1, 1}, {64, 1}, {64, 2}, {256, 2}} {
		b.Run(fmt.Sprintf("batch=%d/workers=%d", c.batch, c.workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				e := seatdtest.New(b, seatdtest.Options{Workers: -1, BatchSize: c.batch, FsyncAlways: true})
				var reqs []events.Request
				for p := 0; p < pools; p++ {
					ten := e.Tenant(seatdtest.TenantOptions{Seats: requests / pools})
					for j := 0; j < requests/pools; j++ {
						reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.CustomerID,
							Assign:      &events.SeatAssign{SubscriptionID: ten.SubscriptionID, Email: fmt.Sprintf("u%d@example.com", j), ImmediateClaim: j%2 == 0},
							SubmittedAt: time.Now().UTC()})
					}
				}
				// Interleave pools, as a mixed backlog would be.
				mixed := make([]events.Request, 0, len(reqs))
				per := requests / pools
				for j := 0; j < per; j++ {
					for p := 0; p < pools; p++ {
						mixed = append(mixed, reqs[p*per+j])
					}
				}
				if _, err := ingress.PublishAll(context.Background(), e.JS, mixed); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < c.workers; w++ {
					e.StartWorker()
				}
				seatdtest.WaitFor(b, 5*time.Minute, "backlog applied", func() bool {
					var n int
					if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests WHERE status = 'succeeded'`).Scan(&n); err != nil {
						b.Fatal(err)
					}
					return n == requests
				})
				el := time.Since(start)
				b.ReportMetric(float64(requests)/el.Seconds(), "req/s")
				b.StopTimer()
			}
		})
	}
}

// BenchmarkHTTPAssign measures sync assigns over HTTP (ingress → queue →
// worker → answer) with 32 concurrent clients, each on its own pool.
//
//	go test -run '^$' -bench HTTPAssign -benchtime 2000x ./cmd/internal/ingress/
func BenchmarkHTTPAssign(b *testing.B) {
	e := seatdtest.New(b, seatdtest.Options{Workers: 2, FsyncAlways: true})
	const clients = 32
	tenants := make([]seatdtest.Tenant, clients)
	for i := range tenants {
		tenants[i] = e.Tenant(seatdtest.TenantOptions{Seats: b.N + 1})
	}
	var next atomic.Int64
	var lat sync.Mutex
	var total time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ten := tenants[c]
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID,
					"email": fmt.Sprintf("h%d@example.com", i), "immediate_claim": true})
				if r.Status != 200 {
					b.Errorf("status %d: %s", r.Status, r.Body)
					return
				}
				lat.Lock()
				total += time.Since(t0)
				lat.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/req")
}
