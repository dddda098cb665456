package ingress

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/telemetry"
)

// Unpublishable is a request that cannot be encoded for the queue.
type Unpublishable struct {
	Request events.Request
	Err     error
}

// PublishAll publishes requests pipelined (many in flight at once, not a
// round trip each) with their ids as Nats-Msg-Id, and waits for every ack.
// A request that cannot be encoded is skipped and returned, so it never
// holds up the ones after it; err reports a failure of the stream.
func PublishAll(ctx context.Context, js jetstream.JetStream, reqs []events.Request) (bad []Unpublishable, err error) {
	const window = 512
	pending := make([]jetstream.PubAckFuture, 0, window)
	flush := func() error {
		timeout := time.NewTimer(30 * time.Second)
		defer timeout.Stop()
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-timeout.C:
				return fmt.Errorf("no publish ack within 30s")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, r := range reqs {
		data, err := r.Encode()
		if err != nil {
			bad = append(bad, Unpublishable{Request: r, Err: err})
			continue
		}
		m := nats.NewMsg(events.RequestsSubject)
		m.Data = data
		telemetry.InjectNATS(ctx, m.Header)
		f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(r.ID))
		if err != nil {
			return bad, err
		}
		if pending = append(pending, f); len(pending) == window {
			if err := flush(); err != nil {
				return bad, err
			}
		}
	}
	return bad, flush()
}
