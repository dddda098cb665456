package importer

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
)

const (
	// chunkSize is how many rows are looked up in the ledger, and then
	// published, at a time.
	chunkSize = 1000
	// Polling the ledger for outcomes asks about pollBatch rows at a time,
	// and backs off from pollMin to pollMax while nothing finishes.
	pollBatch = 256
	pollMin   = 50 * time.Millisecond
	pollMax   = time.Second
)

// publishAndWait reads the file a second time and publishes its valid
// rows, at most --in-flight ahead of the worker, then waits until every
// published row has an outcome.
func (im *importer) publishAndWait(src *os.File, before os.FileInfo) error {
	js, err := im.env.JetStream()
	if err != nil {
		return err
	}
	im.js = js
	im.deadline = time.Now().Add(im.o.Timeout)
	im.pollWait = pollMin
	im.prog = newProgress(im.env.Stderr, im.countValid())

	if now, err := src.Stat(); err != nil || !sameFile(before, now) {
		return errFileChanged
	}
	chunk := min(chunkSize, im.o.InFlight)
	idx := make([]int, 0, chunk)
	reqs := make([]events.Request, 0, chunk)
	i := 0
	for row, err := range Parse(io.NewSectionReader(src, 0, 1<<62), im.parseOptions()) {
		if err != nil {
			return fmt.Errorf("%s: %w", im.o.File, err)
		}
		// The rows must be the ones validated and hashed.
		if i == len(im.rows) || int(im.rows[i].line) != row.Line || (im.rows[i].state == rowInvalid) != (row.Err != nil) {
			return errFileChanged
		}
		i++
		if row.Err != nil {
			continue
		}
		a := row.Assign
		reqs = append(reqs, events.Request{ID: im.requestID(int32(row.Line)), Op: events.OpAssign, CustomerID: im.owner,
			Assign: &a, SubmittedAt: time.Now().UTC()})
		idx = append(idx, i-1)
		if len(reqs) == chunk {
			if err := im.submit(idx, reqs); err != nil {
				return err
			}
			idx, reqs = idx[:0], reqs[:0]
		}
	}
	if len(reqs) > 0 {
		if err := im.submit(idx, reqs); err != nil {
			return err
		}
	}
	if now, err := src.Stat(); i != len(im.rows) || err != nil || !sameFile(before, now) {
		return errFileChanged
	}
	for len(im.pending) > 0 {
		if err := im.poll(); err != nil {
			return err
		}
	}
	return nil
}

func (im *importer) countValid() int { return len(im.rows) - len(im.invalid) }

// submit publishes one chunk of rows, skipping those the ledger already
// has an outcome for (an earlier run of this file, complete or not).
func (im *importer) submit(idx []int, reqs []events.Request) error {
	// Wait for room first: the worker may meanwhile apply rows of an
	// earlier, interrupted run, which the lookup below then skips.
	for len(im.pending) > 0 && len(im.pending)+len(reqs) > im.o.InFlight {
		if err := im.poll(); err != nil {
			return err
		}
	}
	if err := im.checkStop(); err != nil {
		return err
	}
	ids := make([]string, len(reqs))
	for k, r := range reqs {
		ids[k] = r.ID
	}
	recs, err := im.db.Outcomes(im.ctx, ids)
	if err != nil {
		return im.stopOr(err)
	}
	var pubIdx []int
	var pub []events.Request
	for k, r := range reqs {
		if rec, ok := recs[r.ID]; ok && finished(rec) {
			im.markRecord(idx[k], rec)
			im.alreadyDone++
			continue
		}
		pubIdx = append(pubIdx, idx[k])
		pub = append(pub, r)
	}
	err = publishPipelined(im.ctx, im.js, pub, func(k int) {
		i := pubIdx[k]
		im.rows[i].state = rowQueued
		im.pending = append(im.pending, i)
		im.published++
	})
	im.prog.show(im, false)
	if err != nil {
		return im.stopOr(err)
	}
	return nil
}

// poll asks the ledger about the oldest rows still queued (the worker
// takes them roughly in order, so these finish first). It returns at once
// when all of those had finished, as more may have; otherwise it waits a
// little, longer while nothing finishes, so a stopped worker costs little
// and a busy one is not slowed by the polling.
func (im *importer) poll() error {
	if err := im.checkStop(); err != nil {
		return err
	}
	n := min(len(im.pending), pollBatch)
	ids := make([]string, n)
	for k, i := range im.pending[:n] {
		ids[k] = im.requestID(im.rows[i].line)
	}
	recs, err := im.db.Outcomes(im.ctx, ids)
	if err != nil {
		return im.stopOr(err)
	}
	kept := im.pending[:0]
	for k, i := range im.pending[:n] {
		if rec, ok := recs[ids[k]]; ok && finished(rec) {
			im.markRecord(i, rec)
		} else {
			kept = append(kept, i)
		}
	}
	finishedNow := n - len(kept)
	im.pending = append(kept, im.pending[n:]...)
	im.prog.show(im, false)
	switch {
	case len(im.pending) == 0 || finishedNow == n:
		im.pollWait = pollMin
		return nil
	case finishedNow > 0:
		im.pollWait = pollMin
	default:
		im.pollWait = min(2*im.pollWait, pollMax)
	}
	t := time.NewTimer(min(im.pollWait, max(time.Until(im.deadline), 0)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-im.ctx.Done():
	}
	return nil
}

// lookupDone is the dry run's look at the ledger: which valid rows an
// earlier run already imported.
func (im *importer) lookupDone() error {
	for start := 0; start < len(im.rows); start += chunkSize {
		var idx []int
		var ids []string
		for i := start; i < min(start+chunkSize, len(im.rows)); i++ {
			if im.rows[i].state == rowValid {
				idx = append(idx, i)
				ids = append(ids, im.requestID(im.rows[i].line))
			}
		}
		recs, err := im.db.Outcomes(im.ctx, ids)
		if err != nil {
			return im.stopOr(err)
		}
		for k, i := range idx {
			if rec, ok := recs[ids[k]]; ok && finished(rec) {
				im.markRecord(i, rec)
				im.alreadyDone++
			}
		}
	}
	return nil
}

func finished(rec storage.Record) bool { return rec.Status != storage.RequestQueued }

func (im *importer) markRecord(i int, rec storage.Record) {
	code := events.CodeInternal
	if rec.Result != nil {
		code = rec.Result.Code
	}
	im.markDone(i, rec.Status == storage.RequestSucceeded, code)
}

// checkStop ends the loops on Ctrl-C or when --timeout has passed.
func (im *importer) checkStop() error {
	switch {
	case im.ctx.Err() != nil:
		im.stopped = stopInterrupted
	case !im.deadline.IsZero() && time.Now().After(im.deadline):
		im.stopped = stopTimeout
	default:
		return nil
	}
	return errStop
}

// stopOr turns an error caused by Ctrl-C into a clean stop.
func (im *importer) stopOr(err error) error {
	if im.ctx.Err() != nil {
		im.stopped = stopInterrupted
		return errStop
	}
	return err
}

// publishPipelined publishes requests with their ids as Nats-Msg-Id and
// calls acked(k) for each request JetStream has stored, in order.
func publishPipelined(ctx context.Context, js jetstream.JetStream, reqs []events.Request, acked func(k int)) error {
	msgs := make([]stream.Msg, len(reqs))
	for k, r := range reqs {
		m, err := stream.RequestMsg(r)
		if err != nil {
			return fmt.Errorf("request %s: %w", r.ID, err)
		}
		msgs[k] = m
	}
	return stream.PublishAll(ctx, js, msgs, func(k int, _ *jetstream.PubAck) { acked(k) })
}
