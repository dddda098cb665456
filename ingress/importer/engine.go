package importer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
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

// Options is one import.
type Options struct {
	SubscriptionID, OrderID string // exactly one: the pool the seats come from
	File                    string // a path, or "-" for Env.Stdin
	DryRun                  bool   // validate and count rows already imported; publish nothing
	Report                  string // a per-row report to write, .csv or .jsonl; "" for none
	Timeout                 time.Duration
	InFlight                int // most rows published and not yet applied at once
}

// Env is what an import reads and writes through. DB is called once the
// file has been read, JetStream only when rows are to be published, so a
// dry run needs no NATS.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer // the JSON summary; progress and complaints
	DB             func() (*storage.DB, error)
	JetStream      func() (jetstream.JetStream, error)
}

// Why Run returned without every row succeeding. The summary has already
// been printed when Run returns one of these.
var (
	ErrStopped    = errors.New("import interrupted or timed out; run it again to resume")
	ErrRowsFailed = errors.New("some rows failed or were invalid")
)

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
	env    Env
	db     *storage.DB
	o      Options
	ctx    context.Context
	owner  string
	format Format
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

// Run imports one file: validates every row, publishes the valid ones at
// most o.InFlight ahead of the worker, waits for their outcomes, writes the
// report and prints a JSON summary on env.Stdout.
func Run(ctx context.Context, env Env, o Options) error {
	switch {
	case (o.SubscriptionID == "") == (o.OrderID == ""):
		return errors.New("give exactly one of a subscription or an order")
	case !events.IsUUID(o.SubscriptionID + o.OrderID):
		return fmt.Errorf("pool id %q is not a UUID", o.SubscriptionID+o.OrderID)
	case o.Timeout <= 0:
		return errors.New("the timeout must be positive")
	case o.InFlight < 1:
		return errors.New("in-flight must be at least 1")
	}
	if o.Report != "" {
		if _, err := reportFormat(o.Report); err != nil {
			return err
		}
	}
	im := &importer{env: env, o: o, ctx: ctx, start: time.Now(), invalid: map[int]string{}, codeIdx: map[events.Code]uint8{}}

	// The report's temporary file first: a report that cannot be written
	// should fail the command before anything is published.
	var rep *reportFile
	if o.Report != "" {
		var err error
		if rep, err = createReport(o.Report); err != nil {
			return err
		}
		defer rep.abort()
	}
	src, cleanup, err := openSource(ctx, o.File, env.Stdin)
	if err != nil {
		return err
	}
	defer cleanup()
	head := make([]byte, MaxRowBytes)
	n, err := src.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	im.format = DetectFormat(o.File, head[:n])

	if im.db, err = env.DB(); err != nil {
		return err
	}
	if im.owner, err = im.db.PoolOwner(ctx, o.SubscriptionID, o.OrderID); err != nil {
		return err
	}
	before, err := src.Stat()
	if err != nil {
		return err
	}
	if err := im.validate(src); err != nil {
		return err
	}
	im.listInvalid()

	if o.DryRun {
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
	in := stdin
	if name != "-" {
		// f is only read: closing it cannot lose anything.
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, nil, err
		}
		if fi.Mode().IsRegular() {
			return f, func() { _ = f.Close() }, nil
		}
		in = f // a pipe or a device
		defer func() { _ = f.Close() }()
	}
	tmp, err := os.CreateTemp("", "seatctl-import-*")
	if err != nil {
		return nil, nil, err
	}
	// The spool is read back through tmp itself, so a failed close loses
	// nothing; a spool that cannot be removed is left in the temp dir.
	cleanup := func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }
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

func (im *importer) parseOptions() ParseOptions {
	return ParseOptions{SubscriptionID: im.o.SubscriptionID, OrderID: im.o.OrderID, Format: im.format, Name: im.o.File}
}

// validate reads the file once: every row's line and validity, and the
// SHA-256 of the whole content, which request ids are derived from.
func (im *importer) validate(src *os.File) error {
	h := sha256.New()
	tee := io.TeeReader(io.NewSectionReader(src, 0, 1<<62), h)
	for row, err := range Parse(tee, im.parseOptions()) {
		if err != nil {
			return fmt.Errorf("%s: %w", im.o.File, err)
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
	kind, pool := "subscription", im.o.SubscriptionID
	if im.o.OrderID != "" {
		kind, pool = "order", im.o.OrderID
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
			if im.o.Report != "" {
				hint = "the report lists them all"
			}
			_, _ = fmt.Fprintf(im.env.Stderr, "... and %d more invalid rows (%s)\n", more, hint)
			return
		}
		_, _ = fmt.Fprintf(im.env.Stderr, "line %d: %s\n", r.line, im.invalid[i])
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

// Summary is the one JSON object the command prints. Succeeded and
// failed count every valid row by its outcome in the ledger, whether this
// run or an earlier one applied it; already_done says how many were
// applied before this run.
type Summary struct {
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
	s := Summary{File: im.o.File, Format: im.format.String(), SubscriptionID: im.o.SubscriptionID, OrderID: im.o.OrderID,
		DryRun: im.o.DryRun, Rows: len(im.rows), Invalid: len(im.invalid), Published: im.published,
		AlreadyDone: im.alreadyDone, Failed: map[string]int{}, Stopped: im.stopped, Report: im.o.Report}
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
	if err := json.NewEncoder(im.env.Stdout).Encode(s); err != nil {
		return err
	}

	// The JSON summary on stdout is the result; these lines on stderr are
	// for the operator, and the error returned says the same.
	w := im.env.Stderr
	switch {
	case im.stopped != "":
		why := "interrupted"
		if im.stopped == stopTimeout {
			why = fmt.Sprintf("timed out after %s", im.o.Timeout)
		}
		_, _ = fmt.Fprintf(w, "seatctl import: %s: %d rows published and still queued, %d not published; "+
			"run the same command again to resume (rows already imported are skipped)\n", why, s.Queued, s.Unpublished)
		return ErrStopped
	case failed > 0 || s.Invalid > 0:
		_, _ = fmt.Fprintf(w, "seatctl import: %d rows succeeded, %d failed, %d invalid\n", s.Succeeded, failed, s.Invalid)
		return ErrRowsFailed
	}
	return nil
}

var errFileChanged = errors.New("the file changed while it was being imported; run the command again")

// sameFile reports whether the file looks as it did when it was hashed.
func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func reportFormat(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson":
		return JSONL, nil
	}
	return 0, fmt.Errorf("--report %s: the name must end in .csv or .jsonl", path)
}
