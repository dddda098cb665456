package main

import (
	"flag"

	"github.com/seatd/seatd/cmd/internal/status"
)

// seatctl status [--json] [--pools N] [--max-queued-age D] [--max-outbox-age D] [--max-mail-age D]
//
// Exit 0 when the pipeline is healthy, 2 when it is not (the report says
// why), 1 when it could not be read at all.
func statusCmd(e *env, fs *flag.FlagSet, args []string) error {
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	pools := fs.Int("pools", 5, "how many of the fullest pools to list")
	th := status.DefaultThresholds
	fs.DurationVar(&th.MaxQueuedAge, "max-queued-age", th.MaxQueuedAge, "unhealthy when the oldest queued request is older")
	fs.DurationVar(&th.MaxOutboxAge, "max-outbox-age", th.MaxOutboxAge, "unhealthy when the oldest unpublished outbox row is older")
	fs.DurationVar(&th.MaxMailAge, "max-mail-age", th.MaxMailAge, "unhealthy when the oldest undelivered mail request is older")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	n, err := e.nats()
	if err != nil {
		return err
	}
	r, err := status.Gather(e.ctx, e.db, n.JS, max(*pools, 0))
	if err != nil {
		return err
	}
	r.Judge(th)
	if *asJSON {
		err = e.print(r)
	} else {
		err = r.WriteTable(e.stdout)
	}
	if err != nil {
		return err
	}
	if !r.Healthy {
		return exitError{2}
	}
	return nil
}
