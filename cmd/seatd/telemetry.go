package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/cmd/internal/status"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/telemetry"
)

// observe starts what lets an operator watch this process: the pipeline
// gauges on /metrics, the metrics listener of SEATD_METRICS_ADDR (the
// ingress serves /metrics on its own address anyway), and the OTLP trace
// exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set. stop flushes traces and
// closes the listener.
func (m *Main) observe(ctx context.Context, db *storage.DB, nc *config.NATS) (stop func(), err error) {
	tracing, shutdownTracing, err := telemetry.SetupTracing(ctx, "seatd-"+m.Role)
	if err != nil {
		return nil, err
	}
	if tracing {
		m.Log.Info("exporting traces with OTLP")
	}
	telemetry.SetPipeline(func(ctx context.Context) (telemetry.Pipeline, error) { return status.Pipeline(ctx, db, nc.JS) })
	var srv *http.Server
	if addr := m.Config.MetricsAddr; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = shutdownTracing(ctx)
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", telemetry.Handler())
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Log.Error("metrics listener", "err", err)
			}
		}()
		m.Log.Info("metrics listening", "addr", ln.Addr().String())
	}
	return func() {
		telemetry.SetPipeline(nil)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv != nil {
			_ = srv.Shutdown(sctx)
		}
		if err := shutdownTracing(sctx); err != nil {
			m.Log.Warn("flushing traces", "err", err)
		}
	}, nil
}
