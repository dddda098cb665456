package main

import (
	"errors"
	"flag"
)

func seatShow(e *env, fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: seatctl seat show SEAT")
	}
	if err := e.open(); err != nil {
		return err
	}
	seat, err := e.db.Seat(e.ctx, pos[0])
	if err != nil {
		return describe(err)
	}
	out := map[string]any{"seat": seat, "invitation": nil}
	// TODO(lead): invitation delivery state from storage/invitations.go
	return e.print(out)
}
