package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// counter returns the value of a counter series in Registry, 0 if absent.
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// The access log and the metrics name the route pattern, never the path,
// which may carry an invitation token; the log is JSON off a terminal and
// names the request id a handler set.
func TestHTTPRecordsRoutesNotPaths(t *testing.T) {
	var logs bytes.Buffer
	log := NewLogger(&logs, slog.LevelInfo)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /claim/{token}", func(w http.ResponseWriter, r *http.Request) {
		SetRequestID(r.Context(), "req-1")
		w.WriteHeader(404)
	})
	h := HTTP(mux, log)
	route := map[string]string{"route": "GET /claim/{token}", "code": "404"}
	before := counter(t, "seatd_http_requests_total", route)
	unmatched := counter(t, "seatd_http_requests_total", map[string]string{"route": "unmatched", "code": "404"})

	for _, path := range []string{"/claim/secret-token-123?x=secret-query", "/nowhere/secret-path"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if got := counter(t, "seatd_http_requests_total", route); got != before+1 {
		t.Errorf("route counter %v, want %v", got, before+1)
	}
	if got := counter(t, "seatd_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}); got != unmatched+1 {
		t.Errorf("unmatched counter %v, want %v", got, unmatched+1)
	}
	out := logs.String()
	if strings.Contains(out, "secret") {
		t.Errorf("access log carries a path or query: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %s", len(lines), out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("log line is not JSON: %q", lines[0])
	}
	if first["route"] != "GET /claim/{token}" || first["status"] != 404.0 || first["request_id"] != "req-1" {
		t.Errorf("access log line %v", first)
	}
}

func TestLoggerTextOnTerminalOnly(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	defer func() { _ = w.Close() }()
	if IsTerminal(w) || IsTerminal(&bytes.Buffer{}) {
		t.Error("a pipe or a buffer taken for a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer func() { _ = tty.Close() }()
		if !IsTerminal(tty) {
			t.Error("/dev/tty not taken for a terminal")
		}
	}
}

// Trace context survives both hops: NATS headers and the outbox's map.
func TestTracePropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(NewTracerProvider(sdktrace.NewSimpleSpanProcessor(exp), "test"))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	ctx, root := Tracer().Start(context.Background(), "root")
	h := nats.Header{}
	InjectNATS(ctx, h)
	if h.Get("traceparent") == "" {
		t.Fatalf("no traceparent header: %v", h)
	}
	wctx, wspan := StartConsumer(context.Background(), h, "worker")
	m := TraceMap(wctx)
	_, mspan := Tracer().Start(FromTraceMap(context.Background(), m), "mailer")
	mspan.End()
	wspan.End()
	root.End()
	id := root.SpanContext().TraceID()
	if wspan.SpanContext().TraceID() != id || mspan.SpanContext().TraceID() != id {
		t.Errorf("trace ids %s, %s, %s", id, wspan.SpanContext().TraceID(), mspan.SpanContext().TraceID())
	}
	if len(exp.GetSpans()) != 3 {
		t.Errorf("%d spans exported, want 3", len(exp.GetSpans()))
	}
	if TraceMap(context.Background()) != nil {
		t.Error("a context without a trace gave a trace map")
	}
}

// The pipeline gauges come from the function SetPipeline installed, read
// at scrape time; a failed read reports seatd_pipeline_up 0.
func TestPipelineGauges(t *testing.T) {
	t.Cleanup(func() { SetPipeline(nil) })
	SetPipeline(func(context.Context) (Pipeline, error) {
		return Pipeline{
			Streams: []StreamState{{Name: "S", Messages: 7, Oldest: time.Now().Add(-time.Minute),
				Consumers: []ConsumerState{{Name: "c", Pending: 3, AckPending: 2, Redelivered: 1}}}},
			QueuedRequests: 4, OldestQueued: time.Now().Add(-90 * time.Second), OutboxDepth: 5,
		}, nil
	})
	got := gauges(t)
	for series, want := range map[string]float64{
		"seatd_pipeline_up": 1, "seatd_stream_messages{stream=S}": 7, "seatd_consumer_pending_messages{consumer=c,stream=S}": 3,
		"seatd_consumer_ack_pending_messages{consumer=c,stream=S}": 2, "seatd_consumer_redelivered_messages{consumer=c,stream=S}": 1,
		"seatd_queued_requests": 4, "seatd_outbox_depth": 5, "seatd_outbox_oldest_age_seconds": 0,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if a := got["seatd_oldest_queued_request_age_seconds"]; a < 89 || a > 120 {
		t.Errorf("oldest queued age %v, want about 90", a)
	}
	SetPipeline(func(context.Context) (Pipeline, error) { return Pipeline{}, errors.New("nats down") })
	got = gauges(t)
	if v, ok := got["seatd_pipeline_up"]; !ok || v != 0 || len(got) != 1 {
		t.Errorf("on a failed read: %v", got)
	}
}

// gauges returns every seatd_ gauge as name{label=value,...} → value.
func gauges(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "seatd_") || mf.GetMetric()[0].GetGauge() == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}
