// Package importfile reads seat-import files: CSV with a header row, or
// JSON Lines of SeatAssign objects.
//
// It streams: Parse yields one row at a time with the 1-based line the row
// starts on, so a file of any length is read in constant memory. Every row
// it accepts is a SeatAssign for the import's pool that passes
// events.DecodeSeatAssign, exactly what the Assign Seat API would accept;
// every row it rejects carries reasons an operator can act on ("line 7:
// email: value is not a valid email address: ..."). A bad row never ends
// the file; only a file that cannot be read as a whole does (no CSV header,
// unknown columns, a read error).
//
// What it leaves to its caller: whether a seat can actually be assigned
// (capacity, duplicates, the pool's state) is decided by the worker.
package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"strings"

	"github.com/seatd/seatd/events"
)

// Format is the syntax of an import file.
type Format int

const (
	// Detect picks CSV or JSONL from the file name, else from the content.
	Detect Format = iota
	CSV
	JSONL
)

func (f Format) String() string {
	switch f {
	case CSV:
		return "csv"
	case JSONL:
		return "jsonl"
	}
	return "detect"
}

// MaxRowBytes bounds one JSON Lines row; a longer line is an invalid row.
// The largest valid row (1 KiB of metadata, a 254-byte email) is far
// smaller.
const MaxRowBytes = 64 << 10

// ParseOptions say how to read a file and which pool its seats come from.
type ParseOptions struct {
	// Exactly one of SubscriptionID and OrderID names the pool: every row
	// is assigned from it. Canonical lower-case UUIDs.
	SubscriptionID string
	OrderID        string
	// Format of the file; Detect looks at Name's extension (.csv, .jsonl,
	// .ndjson), then at the first non-blank byte ('{' means JSON Lines).
	Format Format
	Name   string
}

func (o ParseOptions) pool() (field, id string) {
	if o.OrderID != "" {
		return "order_id", o.OrderID
	}
	return "subscription_id", o.SubscriptionID
}

// Row is one row of the file: a SeatAssign, or the reasons it is invalid.
type Row struct {
	Line   int // where the row starts, counting from 1
	Assign events.SeatAssign
	Err    *RowError // nil for a valid row
}

// RowError says why a row is invalid.
type RowError struct {
	Line    int
	Reasons []string
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason()) }

// Reason is the error without its line number.
func (e *RowError) Reason() string { return strings.Join(e.Reasons, "; ") }

// Parse reads rows from r. The sequence ends at the end of the file, or
// with a non-nil error when the file as a whole cannot be read; rows
// already yielded stay valid.
func Parse(r io.Reader, opts ParseOptions) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		field, id := opts.pool()
		if (opts.SubscriptionID == "") == (opts.OrderID == "") || !events.IsUUID(id) {
			yield(Row{}, errors.New("importfile: exactly one of SubscriptionID and OrderID must be a UUID"))
			return
		}
		br := bufio.NewReaderSize(r, MaxRowBytes)
		format := opts.Format
		if format == Detect {
			format = detect(opts.Name, br)
		}
		p := parser{opts: opts, poolField: field, poolID: id, yield: yield}
		if format == JSONL {
			p.jsonl(br)
		} else {
			p.csv(br)
		}
	}
}

// DetectFormat reports the format Parse with Detect would use for a file
// of that name starting with head.
func DetectFormat(name string, head []byte) Format {
	return detect(name, bufio.NewReader(bytes.NewReader(head)))
}

func detect(name string, br *bufio.Reader) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".ndjson":
		return JSONL
	case ".csv":
		return CSV
	}
	// A CSV header starts with a column name, never with '{'.
	head, _ := br.Peek(br.Size())
	head = bytes.TrimLeft(bytes.TrimPrefix(head, bom), " \t\r\n")
	if len(head) > 0 && head[0] == '{' {
		return JSONL
	}
	return CSV
}

var bom = []byte("\ufeff")

type parser struct {
	opts      ParseOptions
	poolField string
	poolID    string
	yield     func(Row, error) bool
}

// row validates one row's fields (a JSON object without pool) and yields
// it; reasons found while reading the row's syntax come first. It returns
// false when the consumer stopped.
func (p *parser) row(line int, fields map[string]json.RawMessage, reasons []string) bool {
	fields[p.poolField] = json.RawMessage(`"` + p.poolID + `"`)
	body, err := json.Marshal(fields)
	if err != nil { // only raw values that are not JSON, which callers never pass
		reasons = append(reasons, err.Error())
	}
	a, errs := events.DecodeSeatAssign(body)
	for _, fe := range errs {
		reasons = append(reasons, fieldReason(fe))
	}
	if len(reasons) > 0 {
		return p.yield(Row{Line: line, Err: &RowError{Line: line, Reasons: reasons}}, nil)
	}
	return p.yield(Row{Line: line, Assign: a}, nil)
}

func (p *parser) invalid(line int, reasons ...string) bool {
	return p.yield(Row{Line: line, Err: &RowError{Line: line, Reasons: reasons}}, nil)
}

// fieldReason words a validation error for a person: "email: value is not
// a valid email address: ...", or the message alone for the whole row.
func fieldReason(fe events.FieldError) string {
	var path []string
	for _, l := range fe.Loc {
		if l == "body" {
			continue
		}
		path = append(path, fmt.Sprint(l))
	}
	msg := strings.TrimPrefix(fe.Msg, "Value error, ")
	if len(path) == 0 {
		return msg
	}
	return strings.Join(path, ".") + ": " + msg
}

// poolKind names a pool field for messages: "subscription_id" → "subscription".
func poolKind(field string) string { return strings.TrimSuffix(field, "_id") }
