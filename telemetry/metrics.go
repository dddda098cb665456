package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every seatd metric, plus the Go runtime and process
// collectors. It is not Prometheus's default registry, so a library that
// registers metrics of its own does not change what seatd exposes.
var Registry = prometheus.NewRegistry()

var (
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seatd_http_requests_total",
		Help: "HTTP requests answered by the ingress, by route pattern and status code.",
	}, []string{"route", "code"})
	httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "seatd_http_request_duration_seconds",
		Help:    "Time the ingress took to answer, by route pattern (a sync assign includes the wait for the worker).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seatd_request_outcomes_total",
		Help: "Requests the worker answered, by operation (assign, claim, resend, revoke) and outcome (succeeded, or the result code such as no_available_seats or dead_lettered).",
	}, []string{"op", "outcome"})
	applyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "seatd_request_accept_to_applied_seconds",
		Help:    "Time from the ingress accepting a request to the worker committing its outcome, by operation.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"op"})
	batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "seatd_worker_batch_size",
		Help:    "Requests the worker pulled and applied together in one transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	redeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seatd_redeliveries_total",
		Help: "Messages this process received that JetStream had delivered before (a crashed or slow replica, or a retry), by consumer.",
	}, []string{"consumer"})
	deadLetters = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seatd_dead_letters_total",
		Help: "Requests this worker gave up on and moved to the dead-letter stream.",
	})
	emails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seatd_emails_total",
		Help: "Invitation delivery attempts by result: sent, retried (a temporary failure, tried again later) or failed (recorded as failed, not retried).",
	}, []string{"result"})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		httpRequests, httpDuration, outcomes, applyLatency, batchSize, redeliveries, deadLetters, emails,
		pipelineCollector{},
	)
	// Series that exist from the start read 0 rather than missing, so a
	// rate() or an alert on them works before the first event.
	for _, r := range []string{EmailSent, EmailRetried, EmailFailed} {
		emails.WithLabelValues(r)
	}
}

// Handler serves Registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// ObserveHTTP records one answered HTTP request. route is the mux pattern
// that matched (never the raw path: paths carry tokens and ids).
func ObserveHTTP(route string, status int, d time.Duration) {
	httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// Succeeded is the outcome label of a request that succeeded.
const Succeeded = "succeeded"

// Outcome records the worker's answer to one request: op is the request's
// operation, code its result code ("ok" counts as succeeded). submitted is
// when the ingress accepted it; zero leaves the latency unrecorded.
func Outcome(op, code string, submitted time.Time) {
	if code == "ok" {
		code = Succeeded
	}
	outcomes.WithLabelValues(op, code).Inc()
	if !submitted.IsZero() {
		applyLatency.WithLabelValues(op).Observe(time.Since(submitted).Seconds())
	}
}

// Batch records the size of one batch the worker applied.
func Batch(n int) { batchSize.Observe(float64(n)) }

// Redelivered records a message received for another time by consumer.
func Redelivered(consumer string) { redeliveries.WithLabelValues(consumer).Inc() }

// DeadLettered records a request moved to the dead-letter stream.
func DeadLettered() { deadLetters.Inc() }

// Email results.
const (
	EmailSent    = "sent"
	EmailRetried = "retried"
	EmailFailed  = "failed"
)

// Email records the result of one invitation delivery attempt.
func Email(result string) { emails.WithLabelValues(result).Inc() }

// Pipeline is the state of the queues as a whole, read from JetStream and
// Postgres. It is the same whichever replica reads it: aggregate it across
// replicas with max, not sum.
type Pipeline struct {
	Streams []StreamState `json:"streams"`
	// QueuedRequests are ledger rows still waiting for the worker;
	// OldestQueued is when the oldest of them was accepted (zero: none).
	QueuedRequests int64     `json:"queued_requests"`
	OldestQueued   time.Time `json:"oldest_queued,omitzero"`
	// OutboxDepth is committed events and mail requests not yet published
	// by the relay; OldestOutbox is when the oldest was committed.
	OutboxDepth  int64     `json:"outbox_depth"`
	OldestOutbox time.Time `json:"oldest_outbox,omitzero"`
}

// StreamState is one JetStream stream and its durable consumers.
type StreamState struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	// Oldest is the time of the oldest message held (zero when empty). On
	// a work-queue stream that is the oldest message not yet acknowledged.
	Oldest    time.Time       `json:"oldest,omitzero"`
	Consumers []ConsumerState `json:"consumers,omitempty"`
}

// ConsumerState is one durable consumer's backlog.
type ConsumerState struct {
	Name string `json:"name"`
	// Pending is messages not yet delivered to any replica.
	Pending uint64 `json:"pending"`
	// AckPending is messages delivered and not yet acknowledged: in
	// progress, or waiting for a retry.
	AckPending int `json:"ack_pending"`
	// Redelivered is messages delivered more than once and still not
	// acknowledged.
	Redelivered int `json:"redelivered"`
}

var (
	pipelineMu   sync.Mutex
	pipelineRead func(context.Context) (Pipeline, error)
)

// SetPipeline sets how /metrics reads the pipeline's state; nil stops
// reporting it. A scrape calls read once, with a 5-second timeout.
func SetPipeline(read func(context.Context) (Pipeline, error)) {
	pipelineMu.Lock()
	defer pipelineMu.Unlock()
	pipelineRead = read
}

var (
	descUp = prometheus.NewDesc("seatd_pipeline_up",
		"1 when this scrape could read the pipeline's state from JetStream and Postgres, else 0 (the other seatd_stream_*, seatd_consumer_*, seatd_outbox_* and seatd_*queued* series are then missing).", nil, nil)
	descStreamMsgs = prometheus.NewDesc("seatd_stream_messages",
		"Messages held by a JetStream stream; for SEATD_DLQ, the dead letters waiting for an operator.", []string{"stream"}, nil)
	descStreamAge = prometheus.NewDesc("seatd_stream_oldest_message_age_seconds",
		"Age of the oldest message a stream holds (0 when empty); on the work-queue streams, the oldest message not yet acknowledged.", []string{"stream"}, nil)
	descPending = prometheus.NewDesc("seatd_consumer_pending_messages",
		"Messages a durable consumer has not yet delivered to any replica (the queue ahead of the workers or mailers).", []string{"stream", "consumer"}, nil)
	descAckPending = prometheus.NewDesc("seatd_consumer_ack_pending_messages",
		"Messages delivered and not yet acknowledged: being processed, or waiting for a retry.", []string{"stream", "consumer"}, nil)
	descRedelivered = prometheus.NewDesc("seatd_consumer_redelivered_messages",
		"Unacknowledged messages that have been delivered more than once.", []string{"stream", "consumer"}, nil)
	descQueued = prometheus.NewDesc("seatd_queued_requests",
		"Requests the ledger holds as accepted but not yet applied.", nil, nil)
	descQueuedAge = prometheus.NewDesc("seatd_oldest_queued_request_age_seconds",
		"Age of the oldest request accepted and not yet applied (0 when none): how far behind the workers are.", nil, nil)
	descOutbox = prometheus.NewDesc("seatd_outbox_depth",
		"Committed seat events and mail requests the relay has not yet published.", nil, nil)
	descOutboxAge = prometheus.NewDesc("seatd_outbox_oldest_age_seconds",
		"Age of the oldest outbox row (0 when empty): a growing value means the relay is stuck.", nil, nil)
)

// pipelineCollector reads the pipeline at scrape time.
type pipelineCollector struct{}

func (pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descStreamMsgs, descStreamAge, descPending, descAckPending,
		descRedelivered, descQueued, descQueuedAge, descOutbox, descOutboxAge} {
		ch <- d
	}
}

func (pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	pipelineMu.Lock()
	read := pipelineRead
	pipelineMu.Unlock()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	now := time.Now()
	age := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return max(0, now.Sub(t).Seconds())
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descUp, 1)
	for _, s := range p.Streams {
		gauge(descStreamMsgs, float64(s.Messages), s.Name)
		gauge(descStreamAge, age(s.Oldest), s.Name)
		for _, c := range s.Consumers {
			gauge(descPending, float64(c.Pending), s.Name, c.Name)
			gauge(descAckPending, float64(c.AckPending), s.Name, c.Name)
			gauge(descRedelivered, float64(c.Redelivered), s.Name, c.Name)
		}
	}
	gauge(descQueued, float64(p.QueuedRequests))
	gauge(descQueuedAge, age(p.OldestQueued))
	gauge(descOutbox, float64(p.OutboxDepth))
	gauge(descOutboxAge, age(p.OldestOutbox))
}
