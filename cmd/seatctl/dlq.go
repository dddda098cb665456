package main

import (
	"errors"
	"flag"
	"strconv"

	"github.com/seatd/seatd/worker"
)

// seatctl dlq list | show ID | replay (ID | --all) | purge
func deadLetterCmd(e *env, fs *flag.FlagSet, args []string) error {
	all := fs.Bool("all", false, "replay every dead letter")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("usage: seatctl dlq list | show ID | replay (ID | --all) | purge")
	}
	if err := e.open(); err != nil {
		return err
	}
	n, err := e.nats()
	if err != nil {
		return err
	}
	d := &worker.DeadLetters{DB: e.db, JS: n.JS}
	id := func() (uint64, error) {
		if len(pos) != 2 {
			return 0, errors.New("give the dead letter's id (from seatctl dlq list)")
		}
		v, err := strconv.ParseUint(pos[1], 10, 64)
		if err != nil {
			return 0, errors.New("a dead letter id is a number (from seatctl dlq list)")
		}
		return v, nil
	}
	switch pos[0] {
	case "list":
		list, err := d.List(e.ctx)
		if err != nil {
			return err
		}
		for i := range list {
			list[i].Request, list[i].Raw = nil, "" // list is a summary; show has the message
		}
		return e.print(map[string]any{"dead_letters": list, "count": len(list)})
	case "show":
		seq, err := id()
		if err != nil {
			return err
		}
		entry, err := d.Get(e.ctx, seq)
		if err != nil {
			return err
		}
		return e.print(entry)
	case "replay":
		var seqs []uint64
		if *all {
			list, err := d.List(e.ctx)
			if err != nil {
				return err
			}
			for _, l := range list {
				seqs = append(seqs, l.Seq)
			}
		} else {
			seq, err := id()
			if err != nil {
				return err
			}
			seqs = []uint64{seq}
		}
		replayed := []worker.DeadLetterEntry{}
		for _, seq := range seqs {
			entry, err := d.Replay(e.ctx, seq)
			if err != nil {
				return err
			}
			entry.Request, entry.Raw = nil, ""
			replayed = append(replayed, entry)
		}
		return e.print(map[string]any{"replayed": replayed, "count": len(replayed)})
	case "purge":
		n, err := d.Purge(e.ctx)
		if err != nil {
			return err
		}
		return e.print(map[string]any{"purged": n})
	}
	return errors.New("usage: seatctl dlq list | show ID | replay (ID | --all) | purge")
}
