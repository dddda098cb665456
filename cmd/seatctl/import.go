package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/ingress/importer"
	"github.com/seatd/seatd/storage"
)

const importUsage = `usage: seatctl import (--subscription SUB | --order ORD) [--dry-run] [--report PATH]
                      [--timeout 10m] [--in-flight N] FILE|-

Assigns a file of seats from one pool through the queue, like that many API
calls, and is safe to run again: rows already imported are skipped.

FILE is CSV with a header (columns email, external_customer_id, customer_id,
immediate_claim, metadata) or JSON Lines of seat assignments (.jsonl, .ndjson,
or content starting with '{'); - reads stdin. Exit status 1 when a row failed
or was invalid, 3 when interrupted or timed out (run the same command again
to resume).

example:
  seatctl import --subscription 0b7e…  --report report.csv seats.csv`

func importCmd(e *env, fs *flag.FlagSet, args []string) error {
	var o importer.Options
	fs.StringVar(&o.SubscriptionID, "subscription", "", "subscription to assign the seats from")
	fs.StringVar(&o.OrderID, "order", "", "order to assign the seats from")
	fs.BoolVar(&o.DryRun, "dry-run", false, "validate the file and count the rows already imported; publish nothing")
	fs.StringVar(&o.Report, "report", "", "write a per-row report (line, request_id, status, seat_id, error) to PATH, .csv or .jsonl")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long to publish and wait for outcomes before giving up (a re-run resumes)")
	fs.IntVar(&o.InFlight, "in-flight", 5000, "most rows published and not yet applied at once, so API calls are not queued behind the whole import")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), importUsage) // best effort, as fs.PrintDefaults
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("give exactly one FILE (or - for stdin)\n" + importUsage)
	}
	o.File = pos[0]
	o.SubscriptionID = strings.ToLower(strings.TrimSpace(o.SubscriptionID))
	o.OrderID = strings.ToLower(strings.TrimSpace(o.OrderID))
	if (o.SubscriptionID == "") == (o.OrderID == "") {
		return errors.New("give exactly one of --subscription or --order")
	}
	env := importer.Env{
		Stdin: e.stdin, Stdout: e.stdout, Stderr: e.stderr,
		DB: func() (*storage.DB, error) {
			if err := e.open(); err != nil {
				return nil, err
			}
			return e.db, nil
		},
		JetStream: func() (jetstream.JetStream, error) {
			n, err := e.nats()
			if err != nil {
				return nil, err
			}
			return n.JS, nil
		},
	}
	err = importer.Run(e.ctx, env, o)
	switch {
	case errors.Is(err, importer.ErrStopped):
		return exitError{3}
	case errors.Is(err, importer.ErrRowsFailed):
		return exitError{1}
	}
	return describe(err)
}
