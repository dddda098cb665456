package main

import (
	"errors"
	"flag"

	"github.com/seatd/seatd/events"
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
	inv, err := e.db.InvitationDelivery(e.ctx, seat.ID)
	switch {
	case err == nil:
		out["invitation"] = inv
	case events.ErrorCode(err) != events.CodeNotFound: // immediate claims have none
		return err
	}
	return e.print(out)
}
