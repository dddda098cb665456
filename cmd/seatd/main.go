// Command seatd is the seat assignment service.
//
//	seatd serve     ingress, worker, mailer and webhooks in one process
//	seatd ingress   the HTTP edge only
//	seatd worker    the request worker, outbox relay and sweepers only
//	seatd mailer    the invitation mailer only
//	seatd webhooks  the webhook sender only
//	seatd migrate   apply database migrations and exit
//
// Every role reads the same flags and environment (seatd ROLE -h lists
// them); roles scale separately against a shared NATS and Postgres.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/seatd/seatd/storage/pgcluster"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprintln(os.Stderr, "usage: seatd serve|ingress|worker|mailer|webhooks|migrate [flags]  (seatd ROLE -h for flags)")
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	m := NewMain()
	if err := m.ParseFlags(os.Args[1], os.Args[2:]); err != nil {
		if errors.Is(err, errHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "seatd:", err)
		os.Exit(2)
	}

	// The first SIGINT/SIGTERM drains: stop taking requests, finish the
	// work in hand, exit 0. A second one exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		m.Log.Info("shutting down: draining in-flight work (signal again to exit at once)")
		cancel()
		<-sig
		m.Log.Warn("second signal: exiting now")
		os.Exit(1)
	}()

	stopProfile := startCPUProfile(m)
	err := m.Run(ctx)
	stopProfile()
	if err != nil {
		if errors.Is(err, pgcluster.ErrNoPostgres) {
			fmt.Fprintln(os.Stderr, "seatd:", err) // one line, naming the package to install
		} else {
			m.Log.Error("seatd stopped", "err", err)
		}
		os.Exit(1)
	}
}

// startCPUProfile writes a CPU profile of this process to
// $SEATD_CPUPROFILE.<role> until the returned function is called (at a
// clean exit), for `seatctl bench --seatd-env SEATD_CPUPROFILE=/tmp/cpu`;
// read it with `go tool pprof -top bin/seatd /tmp/cpu.worker`.
func startCPUProfile(m *Main) func() {
	path := os.Getenv("SEATD_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path + "." + m.Role)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		m.Log.Warn("cpu profile not written", "err", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			m.Log.Warn("cpu profile", "err", err)
		}
	}
}
