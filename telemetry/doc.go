// Package telemetry is how seatd lets an operator see what it is doing:
// the Prometheus metrics every role exposes on /metrics, the OpenTelemetry
// trace that follows one request from the ingress through the worker to
// the mailer, and the structured logger.
//
// It owns every metric definition, so an operator's dashboard and this
// package's comments say the same thing. The ingress, worker and mailer
// call its small recording functions at the points where something
// happened; values that live in Postgres or JetStream (queue depths, the
// age of the oldest queued request) are read when /metrics is scraped,
// through a function the caller supplies, so this package imports neither
// storage nor a JetStream client.
//
// Tracing is off (a no-op tracer) unless OTEL_EXPORTER_OTLP_ENDPOINT is
// set. Trace context always propagates, so a seatd with tracing off still
// passes a caller's trace on to the replicas that have it on.
package telemetry
