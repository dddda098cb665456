package ingress_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/telemetry"
)

// TestTraceSpansIngressWorkerMailer: one assign yields a span in the
// ingress, one in the worker and one in the mailer, in one trace, each the
// parent of the next. The context crosses NATS (ingress → worker) and the
// outbox (worker → mailer) only: the three share no Go context. Not
// parallel: it sets the process's tracer provider.
func TestTraceSpansIngressWorkerMailer(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewTracerProvider(sdktrace.NewSimpleSpanProcessor(exp), "seatd-test")
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	dir := t.TempDir()
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: dir})
	ten := e.Tenant(seatdtest.TenantOptions{Product: "Traced"})

	find := func(traceID trace.TraceID) (ingress, work, mail *tracetest.SpanStub) {
		spans := exp.GetSpans()
		for i := range spans {
			s := &spans[i]
			if traceID.IsValid() && s.SpanContext.TraceID() != traceID {
				continue
			}
			switch s.Name {
			case "POST /v1/customer-portal/seats":
				ingress = s
			case "seatd.worker assign":
				work = s
			case "seatd.mailer invitation":
				mail = s
			}
		}
		return
	}
	check := func(email string, traceID trace.TraceID, headers ...string) trace.TraceID {
		t.Helper()
		r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": email}, headers...)
		if r.Status != 200 {
			t.Fatalf("assign: %d %s", r.Status, r.Body)
		}
		var ing, wrk, mail *tracetest.SpanStub
		seatdtest.WaitFor(t, 15*time.Second, "spans from ingress, worker and mailer", func() bool {
			ing, wrk, mail = find(traceID)
			if traceID.IsValid() || ing == nil {
				return ing != nil && wrk != nil && mail != nil
			}
			// No caller trace: the ingress started one; follow it.
			ing, wrk, mail = find(ing.SpanContext.TraceID())
			return ing != nil && wrk != nil && mail != nil
		})
		id := ing.SpanContext.TraceID()
		if wrk.SpanContext.TraceID() != id || mail.SpanContext.TraceID() != id {
			t.Fatalf("three traces: ingress %s, worker %s, mailer %s", id, wrk.SpanContext.TraceID(), mail.SpanContext.TraceID())
		}
		if wrk.Parent.SpanID() != ing.SpanContext.SpanID() || mail.Parent.SpanID() != wrk.SpanContext.SpanID() {
			t.Errorf("spans are not chained ingress → worker → mailer: worker's parent %s (ingress %s), mailer's parent %s (worker %s)",
				wrk.Parent.SpanID(), ing.SpanContext.SpanID(), mail.Parent.SpanID(), wrk.SpanContext.SpanID())
		}
		if ing.SpanKind != trace.SpanKindServer || wrk.SpanKind != trace.SpanKindConsumer || mail.SpanKind != trace.SpanKindConsumer {
			t.Errorf("span kinds %s, %s, %s", ing.SpanKind, wrk.SpanKind, mail.SpanKind)
		}
		// The request id joins the spans to the logs.
		reqID := attr(ing, "seatd.request_id")
		if reqID == "" || attr(wrk, "seatd.request_id") != reqID || attr(mail, "seatd.request_id") != reqID {
			t.Errorf("request ids on the spans: %q, %q, %q", reqID, attr(wrk, "seatd.request_id"), attr(mail, "seatd.request_id"))
		}
		if attr(wrk, "seatd.result") != "ok" {
			t.Errorf("worker span result %q", attr(wrk, "seatd.result"))
		}
		return id
	}

	check("first@example.com", trace.TraceID{})
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if len(files) != 1 {
		t.Errorf("%d emails written, want 1", len(files))
	}

	// A caller's traceparent is continued, not replaced.
	callerTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	got := check("second@example.com", callerTrace,
		"traceparent", fmt.Sprintf("00-%s-00f067aa0ba902b7-01", callerTrace))
	if got != callerTrace {
		t.Errorf("trace %s, want the caller's %s", got, callerTrace)
	}
}

func attr(s *tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
