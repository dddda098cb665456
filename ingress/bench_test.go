package ingress_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/storage"
)

// BenchmarkWorkerThroughput measures how fast the worker applies a backlog
// of assign requests (queue → Postgres), by batch size and worker count.
//
//	go test -run '^$' -bench WorkerThroughput -benchtime 1x ./cmd/internal/ingress/
func BenchmarkWorkerThroughput(b *testing.B) {
	const requests, pools = 5000, 50
	for _, c := range []struct{ batch, workers int }{{1, 1}, {64, 1}, {64, 2}, {256, 2}, {512, 2}} {
		b.Run(fmt.Sprintf("batch=%d/workers=%d", c.batch, c.workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				e := seatdtest.New(b, seatdtest.Options{Workers: -1, BatchSize: c.batch, FsyncAlways: benchFsyncAlways()})
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
// worker → answer), each client on its own pool, 2 workers.
//
//	go test -run '^$' -bench HTTPAssign -benchtime 3000x ./cmd/internal/ingress/
func BenchmarkHTTPAssign(b *testing.B) {
	for _, clients := range []int{32, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			e := seatdtest.New(b, seatdtest.Options{Workers: 2, FsyncAlways: benchFsyncAlways()})
			httpLoad(b, e, clients, clients, false)
		})
	}
}

// BenchmarkHTTPAsyncAccept measures how fast the ingress accepts assigns
// with Prefer: respond-async (64 clients over 50 pools, 2 workers applying
// meanwhile), then how long the backlog takes to be applied.
//
//	go test -run '^$' -bench HTTPAsyncAccept -benchtime 5000x ./cmd/internal/ingress/
func BenchmarkHTTPAsyncAccept(b *testing.B) {
	e := seatdtest.New(b, seatdtest.Options{Workers: 2, FsyncAlways: benchFsyncAlways()})
	start := time.Now()
	httpLoad(b, e, 64, 50, true)
	accepted := time.Since(start)
	seatdtest.WaitFor(b, 10*time.Minute, "backlog applied", func() bool {
		var n int
		if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests WHERE status = 'queued'`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n == 0
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "applied/s")
	b.ReportMetric(time.Since(start).Seconds()-accepted.Seconds(), "drain-s")
}

// httpLoad sends b.N assigns from clients goroutines spread over pools
// pools (each with a session of its own) and reports the rate and the
// latency percentiles of the answers.
func httpLoad(b *testing.B, e *seatdtest.Env, clients, pools int, async bool) {
	// One keep-alive connection per client, as a real load generator.
	e.HTTP.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = clients
	tenants := make([]seatdtest.Tenant, pools)
	for i := range tenants {
		tenants[i] = e.Tenant(seatdtest.TenantOptions{Seats: b.N + 1})
	}
	var headers []string
	want := 200
	if async {
		headers, want = []string{"Prefer", "respond-async"}, 202
	}
	var next atomic.Int64
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ten := tenants[c%pools]
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID,
					"email": fmt.Sprintf("h%d@example.com", i), "immediate_claim": i%2 == 0}, headers...)
				if r.Status != want {
					b.Errorf("status %d: %s", r.Status, r.Body)
					return
				}
				lat[i-1] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	b.ReportMetric(float64(lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[b.N*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkMailDrop measures whether invitations leave as fast as the
// queue creates them: a backlog of assigns with invitations over 50 pools
// is applied by 2 workers while one mailer writes each invitation to the
// mail drop; it reports the apply rate and the rate of invitations sent.
//
//	go test -run '^$' -bench MailDrop -benchtime 2000x ./cmd/internal/ingress/
func BenchmarkMailDrop(b *testing.B) {
	const pools = 50
	e := seatdtest.New(b, seatdtest.Options{Workers: -1, FsyncAlways: benchFsyncAlways(), Mail: "drop", MailDir: b.TempDir()})
	per := (b.N + pools - 1) / pools
	var reqs []events.Request
	for p := 0; p < pools; p++ {
		ten := e.Tenant(seatdtest.TenantOptions{Seats: per})
		for j := 0; j < per; j++ {
			reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.CustomerID,
				Assign: &events.SeatAssign{SubscriptionID: ten.SubscriptionID, Email: fmt.Sprintf("m%d@example.com", j)}, SubmittedAt: time.Now().UTC()})
		}
	}
	if bad, err := ingress.PublishAll(context.Background(), e.JS, reqs); err != nil || len(bad) > 0 {
		b.Fatal(err, bad)
	}
	b.ResetTimer()
	start := time.Now()
	e.StartWorker()
	e.StartWorker()
	count := func(sql string) int {
		var n int
		if err := e.DB.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	var applied time.Duration
	seatdtest.WaitFor(b, 10*time.Minute, "invitations sent", func() bool {
		if applied == 0 && count(`SELECT count(*) FROM requests WHERE status = 'succeeded'`) == len(reqs) {
			applied = time.Since(start)
		}
		return count(`SELECT count(*) FROM invitations WHERE delivery_state = 'sent'`) == len(reqs)
	})
	sent := time.Since(start)
	b.ReportMetric(float64(len(reqs))/applied.Seconds(), "applied/s")
	b.ReportMetric(float64(len(reqs))/sent.Seconds(), "mailed/s")
}

// benchFsyncAlways runs the benchmarks with JetStream's default durability
// (fsync every write) unless SEATD_NATS_FSYNC names an interval, in which
// case the embedded server syncs every second.
func benchFsyncAlways() bool {
	v := os.Getenv("SEATD_NATS_FSYNC")
	return v == "" || v == "always"
}

// BenchmarkDirect is the design the queue replaces, as a yardstick for
// WorkerThroughput: the same 5,000 assigns over 50 pools, each applied in a
// transaction of its own straight through storage by 16 goroutines, no
// queue, no batching.
//
//	go test -run '^$' -bench Direct -benchtime 1x ./cmd/internal/ingress/
func BenchmarkDirect(b *testing.B) {
	const requests, pools, clients = 5000, 50, 16
	for i := 0; i < b.N; i++ {
		e := seatdtest.New(b, seatdtest.Options{Workers: -1})
		var reqs []events.Request
		for p := 0; p < pools; p++ {
			ten := e.Tenant(seatdtest.TenantOptions{Seats: requests / pools})
			for j := 0; j < requests/pools; j++ {
				reqs = append(reqs, events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.CustomerID,
					Assign:      &events.SeatAssign{SubscriptionID: ten.SubscriptionID, Email: fmt.Sprintf("u%d@example.com", j), ImmediateClaim: j%2 == 0},
					SubmittedAt: time.Now().UTC()})
			}
		}
		b.ResetTimer()
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := next.Add(1) - 1
					if k >= int64(len(reqs)) {
						return
					}
					// Interleaved over pools, as in WorkerThroughput.
					r := reqs[(k%pools)*(requests/pools)+k/pools]
					for {
						res, err := e.DB.ApplySerial(context.Background(), e.Settings, []events.Request{r})
						if err == nil {
							if !res[0].OK() {
								b.Errorf("%s: %s", res[0].Code, res[0].Detail)
							}
							break
						}
						if !storage.IsTransient(err) {
							b.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(requests)/time.Since(start).Seconds(), "req/s")
		b.StopTimer()
	}
}
