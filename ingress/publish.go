package ingress

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/telemetry"
)

// Unpublishable is a request that cannot be encoded for the queue.
type Unpublishable struct {
	Request events.Request
	Err     error
}

// PublishAll publishes a batch's requests (stream.PublishAll) with the
// caller's trace context. A request that cannot be encoded is skipped and
// returned, so it never holds up the ones after it; err reports a failure
// of the stream.
func PublishAll(ctx context.Context, js jetstream.JetStream, reqs []events.Request) (bad []Unpublishable, err error) {
	msgs := make([]stream.Msg, 0, len(reqs))
	for _, r := range reqs {
		m, err := stream.RequestMsg(r)
		if err != nil {
			bad = append(bad, Unpublishable{Request: r, Err: err})
			continue
		}
		telemetry.InjectNATS(ctx, m.Header)
		msgs = append(msgs, m)
	}
	return bad, stream.PublishAll(ctx, js, msgs, nil)
}
