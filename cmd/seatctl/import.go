package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/internal/importfile"
	"github.com/seatd/seatd/events"
)

// seatctl import assigns a file of seats from one pool through the queue,
// like that many API calls, and is safe to run again: each row's request
// id is derived from the pool, the file's content and the row's line, so a
// re-run or a resumed run finds the rows already imported in the request
// ledger and skips them, and a row published twice is applied once (by
// Nats-Msg-Id, then by the ledger).
//
// Memory stays bounded by a few bytes per row: the file is read twice as a
// stream (once to validate and hash it, once to publish), never held.

const importUsage = `usage: seatctl import (--subscription SUB | --order ORD) [--dry-run] [--report PATH]
                      [--timeout 10m] [--in-flight N] FILE|-

FILE is CSV with a header (columns email, external_customer_id, customer_id,
immediate_claim, metadata) or JSON Lines of seat assignments (.jsonl, .ndjson,
or content starting with '{'); - reads stdin. Exit status 1 when a row failed
or was invalid, 3 when interrupted or timed out (run the same command again
to resume).`

type importOptions struct {
	subscription, order string
	file                string
	dryRun              bool
	report              string
	timeout             time.Duration
	inFlight            int
}

func importCmd(e *env, fs *flag.FlagSet, args []string) error {
	var o importOptions
	fs.StringVar(&o.subscription, "subscription", "", "subscription to assign the seats from")
	fs.StringVar(&o.order, "order", "", "order to assign the seats from")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate the file and count the rows already imported; publish nothing")
	fs.StringVar(&o.report, "report", "", "write a per-row report (line, request_id, status, seat_id, error) to PATH, .csv or .jsonl")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to publish and wait for outcomes before giving up (a re-run resumes)")
	fs.IntVar(&o.inFlight, "in-flight", 5000, "most rows published and not yet applied at once, so API calls are not queued behind the whole import")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), importUsage)
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("give exactly one FILE (or - for stdin)\n" + importUsage)
	}
	o.file = pos[0]
	o.subscription = strings.ToLower(strings.TrimSpace(o.subscription))
	o.order = strings.ToLower(strings.TrimSpace(o.order))
	switch {
	case (o.subscription == "") == (o.order == ""):
		return errors.New("give exactly one of --subscription or --order")
	case !isCanonicalUUID(o.subscription + o.order):
		return fmt.Errorf("pool id %q is not a UUID", o.subscription+o.order)
	case o.timeout <= 0:
		return errors.New("--timeout must be positive")
	case o.inFlight < 1:
		return errors.New("--in-flight must be at least 1")
	}
	if o.report != "" {
		if _, err := reportFormat(o.report); err != nil {
			return err
		}
	}
	return runImport(e, o)
}

func isCanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// importNamespace is the UUID namespace of import request ids. Changing it
// would make every earlier import look new.
var importNamespace = uuid.MustParse("6c1f0a53-9a5e-4d3b-9a42-5e2f3c7d8b10")

// Row states. A row's outcome lives in the request ledger; this is just
// enough to know what to ask it and to count.
type rowState uint8

const (
	rowInvalid   rowState = iota
	rowValid              // not published by this run (dry run, or stopped before)
	rowQueued             // published, no outcome yet
	rowSucceeded          // outcome ok
	rowFailed             // outcome failed; code says why
)

// importRow is all an import keeps per row: 8 bytes, so a million rows cost
// 8 MB. The request id is recomputed from the line when needed.
type importRow struct {
	line  int32
	state rowState
	code  uint8 // failed rows: index into importer.codes
}

// Why an import stopped before every valid row had an outcome.
const (
	stopInterrupted = "interrupted"
	stopTimeout     = "timeout"
)

// errStop unwinds the publish and wait loops once importer.stopped is set.
var errStop = errors.New("import stopped")

type importer struct {
	e      *env
	o      importOptions
	ctx    context.Context
	owner  string
	format importfile.Format
	start  time.Time

	idPrefix string // kind:pool:sha256 of the file:, the request id name before the line
	rows     []importRow
	invalid  map[int]string // row index → why
	codes    []events.Code
	codeIdx  map[events.Code]uint8

	js          jetstream.JetStream
	pending     []int // rows published without a known outcome, oldest first
	published   int
	alreadyDone int
	done        int // rows with an outcome (for progress)
	failedN     int // rows failed (for progress)
	stopped     string
	deadline    time.Time
	pollWait    time.Duration
	prog        *progress
}

func runImport(e *env, o importOptions) error {
	im := &importer{e: e, o: o, ctx: e.ctx, start: time.Now(), invalid: map[int]string{}, codeIdx: map[events.Code]uint8{}}

	// The report's temporary file first: a report that cannot be written
	// should fail the command before anything is published.
	var rep *reportFile
	if o.report != "" {
		var err error
		if rep, err = createReport(o.report); err != nil {
			return err
		}
		defer rep.abort()
	}
	src, cleanup, err := openSource(e.ctx, o.file, e.stdin)
	if err != nil {
		return err
	}
	defer cleanup()
	head := make([]byte, importfile.MaxRowBytes)
	n, err := src.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	im.format = importfile.DetectFormat(o.file, head[:n])

	if err := e.open(); err != nil {
		return err
	}
	if im.owner, err = e.db.PoolOwner(e.ctx, o.subscription, o.order); err != nil {
		return describe(err)
	}
	before, err := src.Stat()
	if err != nil {
		return err
	}
	if err := im.validate(src); err != nil {
		return err
	}
	im.listInvalid()

	if o.dryRun {
		err = im.lookupDone()
	} else {
		err = im.publishAndWait(src, before)
	}
	if err != nil && !errors.Is(err, errStop) {
		if im.published > 0 {
			err = fmt.Errorf("%w\n%d rows were published and will be applied: run the same command again to resume", err, im.published)
		}
		return err
	}
	return im.finish(rep)
}

// openSource returns the file to import as a seekable file: stdin ("-")
// and other streams are spooled to a temporary file first, since the file
// is hashed (for request ids) before its rows are published.
func openSource(ctx context.Context, name string, stdin io.Reader) (*os.File, func(), error) {
	var in io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		if fi.Mode().IsRegular() {
			return f, func() { f.Close() }, nil
		}
		in = f // a pipe or a device
		defer f.Close()
	}
	tmp, err := os.CreateTemp("", "seatctl-import-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	// A read from a terminal does not end with ctx: copy aside, so Ctrl-C
	// still stops the command.
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(tmp, in)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		err = errors.New("interrupted while reading the input; nothing was published")
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return tmp, cleanup, nil
}

func (im *importer) parseOptions() importfile.Options {
	return importfile.Options{SubscriptionID: im.o.subscription, OrderID: im.o.order, Format: im.format, Name: im.o.file}
}

// validate reads the file once: every row's line and validity, and the
// SHA-256 of the whole content, which request ids are derived from.
func (im *importer) validate(src *os.File) error {
	h := sha256.New()
	tee := io.TeeReader(io.NewSectionReader(src, 0, 1<<62), h)
	for row, err := range importfile.Parse(tee, im.parseOptions()) {
		if err != nil {
			return fmt.Errorf("%s: %w", im.o.file, err)
		}
		if im.ctx.Err() != nil {
			return errors.New("interrupted while validating the file; nothing was published")
		}
		r := importRow{line: int32(row.Line), state: rowValid}
		if row.Err != nil {
			r.state = rowInvalid
			im.invalid[len(im.rows)] = row.Err.Reason()
		}
		im.rows = append(im.rows, r)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // whatever the parser left unread
		return err
	}
	kind, pool := "subscription", im.o.subscription
	if im.o.order != "" {
		kind, pool = "order", im.o.order
	}
	im.idPrefix = fmt.Sprintf("%s:%s:%x:", kind, pool, h.Sum(nil))
	return nil
}

// requestID is the row's request id: the same pool, file content and line
// give the same id, whatever the file is called and however often it runs.
func (im *importer) requestID(line int32) string {
	return uuid.NewSHA1(importNamespace, []byte(im.idPrefix+strconv.Itoa(int(line)))).String()
}

// maxListed bounds the invalid rows listed on stderr; the report has all.
const maxListed = 100

func (im *importer) listInvalid() {
	listed := 0
	for i, r := range im.rows {
		if r.state != rowInvalid {
			continue
		}
		if listed == maxListed {
			more := len(im.invalid) - listed
			hint := "use --report to list them all"
			if im.o.report != "" {
				hint = "the report lists them all"
			}
			fmt.Fprintf(im.e.stderr, "... and %d more invalid rows (%s)\n", more, hint)
			return
		}
		fmt.Fprintf(im.e.stderr, "line %d: %s\n", r.line, im.invalid[i])
		listed++
	}
}

func (im *importer) markDone(i int, ok bool, code events.Code) {
	r := &im.rows[i]
	if r.state == rowSucceeded || r.state == rowFailed {
		return
	}
	im.done++
	if ok {
		r.state = rowSucceeded
		return
	}
	r.state = rowFailed
	im.failedN++
	idx, seen := im.codeIdx[code]
	if !seen && len(im.codes) < 255 {
		idx = uint8(len(im.codes))
		im.codes = append(im.codes, code)
		im.codeIdx[code] = idx
	}
	r.code = idx
}

// importSummary is the one JSON object the command prints. Succeeded and
// failed count every valid row by its outcome in the ledger, whether this
// run or an earlier one applied it; already_done says how many were
// applied before this run.
type importSummary struct {
	File           string         `json:"file"`
	Format         string         `json:"format"`
	SubscriptionID string         `json:"subscription_id,omitempty"`
	OrderID        string         `json:"order_id,omitempty"`
	DryRun         bool           `json:"dry_run"`
	Rows           int            `json:"rows"`
	Valid          int            `json:"valid"`
	Invalid        int            `json:"invalid"`
	Published      int            `json:"published"`
	AlreadyDone    int            `json:"already_done"`
	Succeeded      int            `json:"succeeded"`
	Failed         map[string]int `json:"failed"`
	Queued         int            `json:"queued"`      // published, no outcome yet
	Unpublished    int            `json:"unpublished"` // valid, not published by this run
	Stopped        string         `json:"stopped,omitempty"`
	Seconds        float64        `json:"seconds"`
	Report         string         `json:"report,omitempty"`
}

// finish settles what can still be learnt after publishing stopped, writes
// the report, prints the summary and picks the exit status.
func (im *importer) finish(rep *reportFile) error {
	// Ctrl-C cancelled im.ctx; the last reads must still run.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(im.ctx), 30*time.Second)
	defer cancel()
	if im.prog != nil {
		im.prog.finish(im)
	}
	if rep != nil {
		if err := im.writeReport(ctx, rep); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	s := importSummary{File: im.o.file, Format: im.format.String(), SubscriptionID: im.o.subscription, OrderID: im.o.order,
		DryRun: im.o.dryRun, Rows: len(im.rows), Invalid: len(im.invalid), Published: im.published,
		AlreadyDone: im.alreadyDone, Failed: map[string]int{}, Stopped: im.stopped, Report: im.o.report}
	s.Valid = s.Rows - s.Invalid
	failed := 0
	for _, r := range im.rows {
		switch r.state {
		case rowSucceeded:
			s.Succeeded++
		case rowFailed:
			s.Failed[string(im.codes[r.code])]++
			failed++
		case rowQueued:
			s.Queued++
		case rowValid:
			s.Unpublished++
		}
	}
	s.Seconds = time.Since(im.start).Round(time.Millisecond).Seconds()
	if err := im.e.print(s); err != nil {
		return err
	}

	w := im.e.stderr
	switch {
	case im.stopped != "":
		why := "interrupted"
		if im.stopped == stopTimeout {
			why = fmt.Sprintf("timed out after %s", im.o.timeout)
		}
		fmt.Fprintf(w, "seatctl import: %s: %d rows published and still queued, %d not published; "+
			"run the same command again to resume (rows already imported are skipped)\n", why, s.Queued, s.Unpublished)
		return exitError{3}
	case failed > 0 || s.Invalid > 0:
		fmt.Fprintf(w, "seatctl import: %d rows succeeded, %d failed, %d invalid\n", s.Succeeded, failed, s.Invalid)
		return exitError{1}
	}
	return nil
}

var errFileChanged = errors.New("the file changed while it was being imported; run the command again")

// sameFile reports whether the file looks as it did when it was hashed.
func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func reportFormat(path string) (importfile.Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return importfile.CSV, nil
	case ".jsonl", ".ndjson":
		return importfile.JSONL, nil
	}
	return 0, fmt.Errorf("--report %s: the name must end in .csv or .jsonl", path)
}
