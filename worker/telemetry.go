package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/telemetry"
)

// observe starts the span of one request, continuing the trace its message
// carries, and hands the trace on to the mail request the request may
// write. It counts the message if JetStream delivered it before.
func (w *Worker) observe(ctx context.Context, it *item) {
	var span trace.Span
	ctx, span = telemetry.StartConsumer(ctx, it.msg.Headers(), "seatd.worker "+string(it.req.Op),
		attribute.String("seatd.request_id", it.req.ID), attribute.Int64("seatd.deliveries", int64(it.deliveries)))
	it.span = span
	it.req.Trace = telemetry.TraceMap(ctx)
	if it.deliveries > 1 {
		telemetry.Redelivered(events.WorkerConsumer)
	}
}

// answered records a request's outcome in the metrics, its span and one
// log line that carries the request id, as the ingress's and mailer's do.
func (w *Worker) answered(it item, res events.Result) {
	telemetry.Outcome(string(it.req.Op), string(res.Code), it.req.SubmittedAt)
	if it.span != nil {
		it.span.SetAttributes(attribute.String("seatd.result", string(res.Code)))
	}
	args := []any{"request_id", it.req.ID, "op", it.req.Op, "result", res.Code, "deliveries", it.deliveries}
	if it.req.BatchID != "" {
		args = append(args, "batch_id", it.req.BatchID)
	}
	if res.Seat != nil {
		args = append(args, "seat_id", res.Seat.ID)
	}
	w.log.Info("request applied", args...)
}
