package stream

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/seatd/seatd/events"
)

// BenchmarkPublishFsync measures pipelined request publishes to the
// embedded file store under each SEATD_NATS_FSYNC policy.
//
//	go test -run '^$' -bench PublishFsync -benchtime 10000x ./events
func BenchmarkPublishFsync(b *testing.B) {
	for _, fsync := range []time.Duration{0, time.Second, 2 * time.Minute} {
		name := "always"
		if fsync > 0 {
			name = fsync.String()
		}
		b.Run(name, func(b *testing.B) {
			s, err := StartServer(ServerConfig{Port: -1, StoreDir: b.TempDir(), Fsync: fsync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Shutdown()
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(512))
			if err := SetupStreams(context.Background(), js, StreamConfig{}); err != nil {
				b.Fatal(err)
			}
			r := events.Request{Op: events.OpAssign, CustomerID: uuid.NewString(),
				Assign: &events.SeatAssign{SubscriptionID: uuid.NewString(), Email: "bench@example.com"}}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				r.ID = uuid.NewString()
				data, _ := r.Encode()
				if _, err := js.PublishAsync(events.RequestsSubject, data, jetstream.WithMsgID(r.ID)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publishes not acknowledged")
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
			// And one at a time, as a single sync API call does.
			t0 := time.Now()
			const sync = 200
			for i := 0; i < sync; i++ {
				r.ID = uuid.NewString()
				data, _ := r.Encode()
				if _, err := js.Publish(context.Background(), events.RequestsSubject, data, jetstream.WithMsgID(r.ID)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(t0).Microseconds())/sync, "µs/sync-publish")
		})
	}
}
