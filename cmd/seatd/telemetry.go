package main

import (
	"context"
	"time"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/cmd/internal/status"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/telemetry"
)

// observe starts what lets an operator watch this process: the pipeline
// gauges on /metrics (served by the ingress on SEATD_HTTP_ADDR, by the
// other roles on SEATD_HEALTH_ADDR, see startup), and the OTLP trace
// exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set. stop flushes traces.
func (m *Main) observe(ctx context.Context, db *storage.DB, nc *config.NATS) (stop func(), err error) {
	tracing, shutdownTracing, err := telemetry.SetupTracing(ctx, "seatd-"+m.Role)
	if err != nil {
		return nil, err
	}
	if tracing {
		m.Log.Info("exporting traces with OTLP")
	}
	telemetry.SetPipeline(func(ctx context.Context) (telemetry.Pipeline, error) { return status.Pipeline(ctx, db, nc.JS) })
	return func() {
		telemetry.SetPipeline(nil)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			m.Log.Warn("flushing traces", "err", err)
		}
	}, nil
}
