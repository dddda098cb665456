package telemetry

import (
	"context"
	"os"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// propagator is W3C Trace Context: the traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

func init() { otel.SetTextMapPropagator(propagator) }

// SetupTracing exports spans with OTLP over HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
// set; the exporter reads the rest of the standard OTEL_EXPORTER_OTLP_*
// variables itself (headers, timeout, TLS). Otherwise tracing stays a
// no-op. service names the process, e.g. seatd-worker. The returned
// function flushes and stops the exporter; call it on exit.
func SetupTracing(ctx context.Context, service string) (enabled bool, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false, noop, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return false, noop, err
	}
	tp := NewTracerProvider(sdktrace.NewBatchSpanProcessor(exp), service)
	otel.SetTracerProvider(tp)
	return true, tp.Shutdown, nil
}

// NewTracerProvider returns a provider that samples every trace (unless a
// caller's traceparent says otherwise) and hands spans to sp, with
// service.name set to service. Tests pass an in-memory exporter's
// processor.
func NewTracerProvider(sp sdktrace.SpanProcessor, service string) *sdktrace.TracerProvider {
	res, _ := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	return sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
}

// Tracer is seatd's tracer, from the global provider at the time of the
// call (a no-op one unless SetupTracing or a test set another).
func Tracer() trace.Tracer { return otel.Tracer("github.com/seatd/seatd") }

// natsCarrier adapts NATS message headers to the propagator. Keys are
// kept exactly as the propagator writes them (traceparent, tracestate).
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes ctx's trace context into a message's headers, which
// must not be nil (nats.NewMsg makes them).
func InjectNATS(ctx context.Context, h nats.Header) { propagator.Inject(ctx, natsCarrier(h)) }

// ExtractNATS returns ctx carrying the trace context of a message's
// headers, if they have one.
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, natsCarrier(h))
}

// TraceMap returns ctx's trace context as a small map for a message that
// crosses a store (the outbox) rather than a NATS header; nil when ctx
// carries no trace.
func TraceMap(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := propagation.MapCarrier{}
	propagator.Inject(ctx, m)
	return m
}

// FromTraceMap is the reverse of TraceMap.
func FromTraceMap(ctx context.Context, m map[string]string) context.Context {
	if len(m) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(m))
}

// StartConsumer starts the span of a process (worker, mailer) handling one
// message, as a child of the trace the message carries in its headers.
func StartConsumer(ctx context.Context, h nats.Header, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ExtractNATS(ctx, h), name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}
