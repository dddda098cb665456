package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type requestInfoKey struct{}

// requestInfo is filled in by handlers while the middleware waits, so the
// access log line can name the request id the handler chose.
type requestInfo struct{ id string }

// SetRequestID names the seatd request an HTTP request submitted, for the
// access log line and the span. A handler that submits several (a batch)
// names the batch.
func SetRequestID(ctx context.Context, id string) {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		info.id = id
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("seatd.request_id", id))
}

// quietRoutes are polled by probes and scrapers; their access log lines
// are debug-level.
var quietRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// HTTP wraps the ingress's mux: one server span per request (continuing a
// caller's traceparent), the request counter and latency histogram by
// route pattern, and one access log line. Only the route pattern is
// recorded, never the path or query, which may carry invitation tokens.
func HTTP(mux http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := Tracer().Start(ctx, "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		info := &requestInfo{}
		ctx = context.WithValue(ctx, requestInfoKey{}, info)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(ctx)
		mux.ServeHTTP(rec, r) // the mux sets r.Pattern on this request
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		span.SetName(route)
		span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
		ObserveHTTP(route, rec.status, d)
		level := slog.LevelInfo
		if quietRoutes[route] {
			level = slog.LevelDebug
		}
		attrs := []slog.Attr{slog.String("route", route), slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000)}
		if info.id != "" {
			attrs = append(attrs, slog.String("request_id", info.id))
		}
		if sc := span.SpanContext(); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		log.LogAttrs(ctx, level, "http request", attrs...)
	})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
