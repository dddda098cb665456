package importer

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// reportFile is the per-row report, written to a temporary file next to
// its path and renamed into place when complete, so a report on disk is
// never half written.
type reportFile struct {
	path    string
	format  Format
	tmp     *os.File
	renamed bool
}

func createReport(path string) (*reportFile, error) {
	format, err := reportFormat(path)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("--report: %w", err)
	}
	return &reportFile{path: path, format: format, tmp: tmp}, nil
}

// abort drops the unfinished report, on the way out of a failed import
// whose own error is the one to report.
func (r *reportFile) abort() {
	if !r.renamed {
		_ = r.tmp.Close() // possibly closed already
		_ = os.Remove(r.tmp.Name())
	}
}

// ReportRow is one line of the report. Status is invalid, succeeded,
// failed, queued (published, no outcome yet), unpublished (valid, not
// published because the import stopped), or valid (dry run).
type ReportRow struct {
	Line      int     `json:"line"`
	RequestID *string `json:"request_id"`
	Status    string  `json:"status"`
	SeatID    *string `json:"seat_id"`
	Error     *string `json:"error"`
}

var reportColumns = []string{"line", "request_id", "status", "seat_id", "error"}

// writeReport writes every row in file order. It asks the ledger for the
// seats and errors of rows with an outcome, a chunk at a time, and so also
// picks up queued rows that finished since the last poll.
func (im *importer) writeReport(ctx context.Context, rep *reportFile) error {
	bw := bufio.NewWriterSize(rep.tmp, 64<<10)
	var write func(ReportRow) error
	var flush func() error
	if rep.format == CSV {
		cw := csv.NewWriter(bw)
		if err := cw.Write(reportColumns); err != nil {
			return err
		}
		write = func(r ReportRow) error {
			return cw.Write([]string{strconv.Itoa(r.Line), deref(r.RequestID), r.Status, deref(r.SeatID), deref(r.Error)})
		}
		flush = func() error { cw.Flush(); return cw.Error() }
	} else {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		write = func(r ReportRow) error { return enc.Encode(r) }
		flush = func() error { return nil }
	}

	for start := 0; start < len(im.rows); start += chunkSize {
		end := min(start+chunkSize, len(im.rows))
		var ids []string
		for i := start; i < end; i++ {
			if s := im.rows[i].state; s != rowInvalid && s != rowValid {
				ids = append(ids, im.requestID(im.rows[i].line))
			}
		}
		recs, err := im.db.Outcomes(ctx, ids)
		if err != nil {
			return err
		}
		for i := start; i < end; i++ {
			r := &im.rows[i]
			out := ReportRow{Line: int(r.line)}
			if r.state == rowInvalid {
				out.Status, out.Error = "invalid", ptr(im.invalid[i])
				if err := write(out); err != nil {
					return err
				}
				continue
			}
			id := im.requestID(r.line)
			out.RequestID = &id
			rec, ok := recs[id]
			if ok && finished(rec) {
				im.markRecord(i, rec)
			}
			switch r.state {
			case rowValid:
				out.Status = "unpublished"
				if im.o.DryRun {
					out.Status = "valid"
				}
			case rowQueued:
				out.Status = "queued"
			case rowSucceeded:
				out.Status = "succeeded"
				if rec.Result != nil && rec.Result.Seat != nil {
					out.SeatID = ptr(rec.Result.Seat.ID)
				}
			case rowFailed:
				out.Status = "failed"
				msg := string(im.codes[r.code])
				if rec.Result != nil && rec.Result.Detail != "" {
					msg += ": " + rec.Result.Detail
				}
				out.Error = &msg
			}
			if err := write(out); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := rep.tmp.Sync(); err != nil {
		return err
	}
	if err := rep.tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(rep.tmp.Name(), rep.path); err != nil {
		return err
	}
	rep.renamed = true
	return nil
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// progress draws a bar on stderr when it is a terminal, and otherwise
// writes a plain line every few seconds, for logs. It is best effort: a
// progress line that cannot be written does not stop the import.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	start time.Time
	last  time.Time
	every time.Duration
	drawn bool
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total, start: time.Now(), every: 2 * time.Second}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 100*time.Millisecond
		}
	}
	p.last = p.start
	return p
}

func (p *progress) show(im *importer, final bool) {
	now := time.Now()
	if !final && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	done, queued := im.done, len(im.pending)
	// The rate counts rows this run got applied, not those found done.
	rate := float64(done-im.alreadyDone) / max(now.Sub(p.start).Seconds(), 1e-3)
	if !p.tty {
		_, _ = fmt.Fprintf(p.w, "seatctl import: %d/%d rows done (%d failed), %d queued, %.0f rows/s\n",
			done, p.total, im.failedN, queued, rate)
		return
	}
	const width = 30
	d, q := width, 0
	if p.total > 0 {
		d = done * width / p.total
		q = (done+queued)*width/p.total - d
	}
	bar := strings.Repeat("#", d) + strings.Repeat(">", q) + strings.Repeat(".", width-d-q)
	_, _ = fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d done, %d failed, %d queued, %.0f rows/s", bar, done, p.total, im.failedN, queued, rate)
	p.drawn = true
}

func (p *progress) finish(im *importer) {
	p.show(im, true)
	if p.tty && p.drawn {
		_, _ = fmt.Fprintln(p.w)
	}
}
