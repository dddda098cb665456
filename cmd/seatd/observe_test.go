package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/seatd/seatd/storage/storagetest"
)

// What an operator watches, checked on real processes after real traffic:
// ingress, worker and mailer run as separate children; their /metrics show
// the traffic, their JSON logs name the same request id for one request
// from the HTTP call to the email, and the spans they export with OTLP to
// a collector make one trace of it.
func TestMetricsLogsAndTracesAcrossRoles(t *testing.T) {
	r := newRig(t, storagetest.NewDatabase(t))
	collector := startCollector(t)
	r.env = append(r.env, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	workerAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mailerAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ing := r.start("ingress", "ingress", "SEATD_HTTP_ADDR="+httpAddr)
	wrk := r.start("worker", "worker", "SEATD_HEALTH_ADDR="+workerAddr)
	mlr := r.start("mailer", "mailer", "SEATD_HEALTH_ADDR="+mailerAddr)
	base := "http://" + httpAddr
	waitHTTP(t, ing, base)
	waitHTTP(t, wrk, "http://"+workerAddr)
	waitHTTP(t, mlr, "http://"+mailerAddr)

	// Two seats, three invitees: two succeed and are emailed, one is refused.
	ten := provision(t, r.db, 1, 2)[0]
	client := &http.Client{Timeout: 30 * time.Second}
	var statuses []int
	for i := range 3 {
		c := postAssign(client, base, ten, fmt.Sprintf("invitee-%d@example.com", i), false)
		if c.err != nil {
			t.Fatal(c.err)
		}
		statuses = append(statuses, c.status)
	}
	if fmt.Sprint(statuses) != "[200 200 400]" {
		t.Fatalf("statuses %v, want [200 200 400]", statuses)
	}
	// A claim-info lookup carries a token in its path; only the route
	// pattern may be logged.
	const probeToken = "probe-token-7d2f0c1e9b8a"
	if resp, err := client.Get(base + "/v1/customer-seats/claim/" + probeToken); err != nil {
		t.Fatal(err)
	} else {
		_ = resp.Body.Close()
	}
	mailDir := filepath.Join(r.dataDir, "mail")
	waitFor(t, 30*time.Second, "two invitation emails", func() (bool, string) {
		files, _ := filepath.Glob(filepath.Join(mailDir, "*.eml"))
		return len(files) == 2, fmt.Sprintf("%d .eml files", len(files))
	})

	// The ingress counts answers by route and status.
	ingM := scrape(t, base)
	ingM.expect(t, `seatd_http_requests_total{code="200",route="POST /v1/customer-portal/seats"}`, 2)
	ingM.expect(t, `seatd_http_requests_total{code="400",route="POST /v1/customer-portal/seats"}`, 1)
	ingM.expect(t, `seatd_http_requests_total{code="404",route="GET /v1/customer-seats/claim/{token}"}`, 1)
	// The worker counts outcomes by reason, their latency and its batches.
	wrkM := scrape(t, "http://"+workerAddr)
	wrkM.expect(t, `seatd_request_outcomes_total{op="assign",outcome="succeeded"}`, 2)
	wrkM.expect(t, `seatd_request_outcomes_total{op="assign",outcome="no_available_seats"}`, 1)
	wrkM.expect(t, `seatd_request_accept_to_applied_seconds_count{op="assign"}`, 3)
	if n := wrkM.value(t, `seatd_worker_batch_size_sum`); n != 3 {
		t.Errorf("batch sizes add up to %v, want the 3 requests", n)
	}
	wrkM.expect(t, `seatd_dead_letters_total`, 0)
	// Every role reads the pipeline: nothing waits, nothing is stuck.
	for _, m := range []metrics{ingM, wrkM} {
		m.expect(t, `seatd_pipeline_up`, 1)
		m.expect(t, `seatd_consumer_pending_messages{consumer="seatd-worker",stream="SEATD_REQUESTS"}`, 0)
		m.expect(t, `seatd_queued_requests`, 0)
		m.expect(t, `seatd_oldest_queued_request_age_seconds`, 0)
		m.expect(t, `seatd_stream_messages{stream="SEATD_DLQ"}`, 0)
	}
	// The mailer counts what it sent; its consumer drains once the sends
	// are acknowledged.
	waitFor(t, 10*time.Second, "the mailer's metrics to show both emails sent and acknowledged", func() (bool, string) {
		m := scrape(t, "http://"+mailerAddr)
		sent := m.value(t, `seatd_emails_total{result="sent"}`)
		pending := m.value(t, `seatd_consumer_ack_pending_messages{consumer="seatd-mailer",stream="SEATD_MAIL"}`) +
			m.value(t, `seatd_consumer_pending_messages{consumer="seatd-mailer",stream="SEATD_MAIL"}`)
		return sent == 2 && pending == 0, fmt.Sprintf("sent %v, mail backlog %v", sent, pending)
	})
	mlrM := scrape(t, "http://"+mailerAddr)
	mlrM.expect(t, `seatd_emails_total{result="failed"}`, 0)
	mlrM.expect(t, `seatd_emails_total{result="retried"}`, 0)
	mlrM.expect(t, `seatd_outbox_depth`, 0)

	// Logs: JSON lines (stderr is a pipe), and one request id follows each
	// successful assign through all three processes.
	ingLogs, wrkLogs, mlrLogs := jsonLines(t, ing), jsonLines(t, wrk), jsonLines(t, mlr)
	var accepted []string
	for _, l := range ingLogs {
		if l["msg"] == "http request" && l["route"] == "POST /v1/customer-portal/seats" && l["status"] == 200.0 {
			accepted = append(accepted, l["request_id"].(string))
		}
	}
	if len(accepted) != 2 {
		t.Fatalf("ingress access log names %d successful assigns, want 2: %v", len(accepted), accepted)
	}
	for _, id := range accepted {
		if !hasLine(wrkLogs, "request applied", id) {
			t.Errorf("no worker log line for request %s", id)
		}
		if !hasLine(mlrLogs, "invitation sent", id) {
			t.Errorf("no mailer log line for request %s", id)
		}
	}
	// Each process exported its span of each request, all in one trace.
	for _, id := range accepted {
		waitFor(t, 15*time.Second, "spans of request "+id+" from the three roles", func() (bool, string) {
			spans := collector.spans(id)
			traces := map[string]bool{}
			for _, s := range spans {
				traces[s.traceID] = true
			}
			ok := len(spans) == 3 && len(traces) == 1 &&
				spans[0].service == "seatd-ingress" && spans[1].service == "seatd-worker" && spans[2].service == "seatd-mailer"
			return ok, fmt.Sprintf("%+v", spans)
		})
	}

	// Secrets never reach a log: not the bearer token, not the secret key.
	for _, p := range []*proc{ing, wrk, mlr} {
		out := p.Output()
		if strings.Contains(out, ten.token) || strings.Contains(out, testSecretKey) || strings.Contains(out, probeToken) {
			t.Errorf("%s logged a secret", p.name)
		}
	}
}

// metrics is one scrape: series (name with labels, as exposed) → value.
type metrics map[string]float64

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?) (\S+)$`)

func scrape(t testing.TB, base string) metrics {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s/metrics: %s", base, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if g := seriesLine.FindStringSubmatch(line); g != nil {
			v, err := strconv.ParseFloat(g[2], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			m[g[1]] = v
		}
	}
	return m
}

func (m metrics) value(t testing.TB, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("no series %s in /metrics", series)
	}
	return v
}

func (m metrics) expect(t testing.TB, series string, want float64) {
	t.Helper()
	if got := m.value(t, series); got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// jsonLines parses a child's log output; every line after the printed
// configuration must be a JSON object.
func jsonLines(t testing.TB, p *proc) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line == "seatd configuration:" || strings.HasPrefix(line, "  ") {
			continue // the configuration printed at start
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("%s: log line is not JSON: %q", p.name, line)
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		t.Fatalf("%s wrote no JSON log lines:\n%s", p.name, p.Output())
	}
	return out
}

func hasLine(lines []map[string]any, msg, requestID string) bool {
	for _, l := range lines {
		if l["msg"] == msg && l["request_id"] == requestID {
			return true
		}
	}
	return false
}

// collector is an OTLP/HTTP trace receiver: it keeps each exported span's
// service, trace id and seatd.request_id.
type collector struct {
	*httptest.Server
	mu  sync.Mutex
	got []exportedSpan
}

type exportedSpan struct{ service, traceID, name, requestID string }

func startCollector(t testing.TB) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), 400)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, rs := range req.ResourceSpans {
			var service string
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					e := exportedSpan{service: service, traceID: hex.EncodeToString(s.TraceId), name: s.Name}
					for _, a := range s.Attributes {
						if a.Key == "seatd.request_id" {
							e.requestID = a.GetValue().GetStringValue()
						}
					}
					c.got = append(c.got, e)
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

// spans returns the spans of one request, in the order ingress, worker,
// mailer.
func (c *collector) spans(requestID string) []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []exportedSpan
	for _, s := range c.got {
		if s.requestID == requestID {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].service < out[j].service })
	// ingress < mailer < worker alphabetically; put the worker second.
	if len(out) == 3 {
		out[1], out[2] = out[2], out[1]
	}
	return out
}
