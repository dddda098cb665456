package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/seatd/seatd/cmd/internal/bench"
)

const benchUsage = `usage: seatctl bench --mode MODE[,MODE...]|all [--requests N] [--pools N] [--seats-per-pool N]
                     [--clients N] [--claim-ratio F] [--seatd PATH] [--seatd-env KEY=VALUE]...
                     [--pgbench-ceiling PATH] [--keep]

Measures seatd as a user runs it: each mode creates a database of its own on
the Postgres server (DATABASE_URL, or the one seatctl finds), starts the real
seatd binary as a child process with its rate limits lifted, drives its load,
then verifies that every request has an outcome, no pool is over capacity and
no seat is duplicated. Each mode prints a summary on stderr and one JSON line
on stdout; a mode whose verification fails prints why and no figures, and
the exit status is 1. The children get none of this environment's SEATD_*
settings (nor seatctl's seatd flags): give them with --seatd-env.

Modes: direct, queue, http-async, http-sync, hot, import, mail.`

func benchCmd(e *env, fs *flag.FlagSet, args []string) error {
	var o bench.Options
	mode := fs.String("mode", "", "mode(s), comma-separated, or all: "+strings.Join(bench.Modes, ", "))
	fs.IntVar(&o.Requests, "requests", 0, "requests per mode (0: the mode's default; mail: invitations per sender)")
	fs.IntVar(&o.Pools, "pools", 50, "pools the load is spread over (hot and import use one)")
	fs.IntVar(&o.SeatsPerPool, "seats-per-pool", 0, "seats in each pool (0: enough for every request; fewer makes the rest be refused)")
	fs.IntVar(&o.Clients, "clients", 64, "concurrent clients (direct, http-async, http-sync)")
	fs.Float64Var(&o.ClaimRatio, "claim-ratio", 0, "share of assigns with immediate_claim (no invitation)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "give up on a mode after this long (default 15m)")
	fs.StringVar(&o.Seatd, "seatd", "", "seatd binary (default: the one next to seatctl, else built with go build)")
	fs.StringVar(&o.Seatctl, "seatctl", "", "seatctl binary for import mode (default: this one)")
	fs.StringVar(&o.PgbenchCeiling, "pgbench-ceiling", "", "run this script (../shared/perf/pgbench-ceiling) before each mode and report its tps and the mode's ratio to it")
	fs.BoolVar(&o.Keep, "keep", false, "keep each mode's database and data directory")
	var extra multi
	fs.Var(&extra, "seatd-env", "KEY=VALUE setting for the seatd children, e.g. SEATD_NATS_FSYNC=1s (repeatable)")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected arguments %v\n%s", pos, benchUsage)
	}
	switch *mode {
	case "":
		return errors.New("--mode is required (seatctl bench -h lists the modes)")
	case "all":
		o.Modes = bench.Modes
	default:
		o.Modes = strings.Split(*mode, ",")
	}
	o.SeatdEnv = extra
	if err := o.Check(); err != nil {
		return err
	}
	o.Stdout, o.Stderr = e.stdout, e.stderr
	url, stop, err := e.cfg.Database(e.ctx, e.log)
	if err != nil {
		return err
	}
	e.close = append(e.close, func() { _ = stop() })
	o.AdminURL = url
	if o.Seatctl == "" {
		if o.Seatctl, err = os.Executable(); err != nil {
			return err
		}
	}
	if o.Seatd == "" {
		dir, err := os.MkdirTemp("", "seatctl-bench-bin-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if o.Seatd, err = bench.FindSeatd(dir); err != nil {
			return err
		}
	} else if o.Seatd, err = filepath.Abs(o.Seatd); err != nil {
		return err
	}
	return bench.Run(e.ctx, o)
}
