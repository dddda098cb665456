package importer

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Columns are the CSV columns an import may have, in any order and any
// subset that names a recipient.
var Columns = []string{"email", "external_customer_id", "customer_id", "immediate_claim", "metadata"}

var recipientColumns = []string{"email", "external_customer_id", "customer_id"}

// csv reads a CSV file: a header naming the columns, then one seat a
// record. Cells are trimmed; an empty cell is an absent field, and a record
// of empty cells is skipped like a blank line.
func (p *parser) csv(br *bufio.Reader) {
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1 // a short or long record is an invalid row, not the end of the file
	r.ReuseRecord = true

	header, err := r.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		p.yield(Row{}, fmt.Errorf("the file is empty: a CSV import starts with a header line naming its columns (%s)",
			strings.Join(Columns, ", ")))
		return
	case errors.As(err, &pe):
		p.yield(Row{}, fmt.Errorf("line %d: the CSV header cannot be read: %v", pe.StartLine, pe.Err))
		return
	case err != nil:
		p.yield(Row{}, err)
		return
	}
	cols, err := p.columns(header)
	if err != nil {
		p.yield(Row{}, err)
		return
	}

	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if errors.As(err, &pe) {
			if !p.invalid(pe.StartLine, "the CSV record cannot be read: "+pe.Err.Error()) {
				return
			}
			continue
		}
		if err != nil {
			p.yield(Row{}, err)
			return
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(cols) {
			if !p.invalid(line, fmt.Sprintf("the record has %s, the header has %d", plural(len(rec), "field"), len(cols))) {
				return
			}
			continue
		}
		if blankRecord(rec) {
			continue // spreadsheets export empty rows as ",,,"
		}
		if !p.csvRow(line, cols, rec) {
			return
		}
	}
}

// columns checks the header: known names only, each once, and at least one
// recipient column.
func (p *parser) columns(header []string) ([]string, error) {
	cols := make([]string, len(header))
	var unknown, poolCols []string
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // spreadsheets write a byte-order mark
		}
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			return nil, fmt.Errorf("CSV header: column %d has no name; columns are %s", i+1, strings.Join(Columns, ", "))
		case slices.Contains(cols[:i], h):
			return nil, fmt.Errorf("CSV header: column %q appears twice", h)
		case h == "subscription_id" || h == "order_id" || h == "checkout_id":
			poolCols = append(poolCols, h)
		case !slices.Contains(Columns, h):
			unknown = append(unknown, strconv.Quote(h))
		}
		cols[i] = h
	}
	if len(poolCols) > 0 {
		return nil, fmt.Errorf("CSV header: column %s is not allowed: the pool is given with --subscription or --order, not per row",
			strings.Join(poolCols, ", "))
	}
	if len(unknown) > 0 {
		noun := "column"
		if len(unknown) > 1 {
			noun = "columns"
		}
		return nil, fmt.Errorf("CSV header: unknown %s %s; columns are %s", noun, strings.Join(unknown, ", "), strings.Join(Columns, ", "))
	}
	if !slices.ContainsFunc(cols, func(c string) bool { return slices.Contains(recipientColumns, c) }) {
		return nil, fmt.Errorf("CSV header names no recipient column: add one of %s", strings.Join(recipientColumns, ", "))
	}
	return cols, nil
}

func (p *parser) csvRow(line int, cols, rec []string) bool {
	fields := make(map[string]json.RawMessage, len(cols)+1)
	var reasons []string
	for i, col := range cols {
		v := strings.TrimSpace(rec[i])
		if v == "" {
			continue
		}
		if !utf8.ValidString(v) {
			reasons = append(reasons, col+": is not valid UTF-8 text")
			continue
		}
		switch col {
		case "immediate_claim":
			b, ok := parseBool(v)
			if !ok {
				reasons = append(reasons, fmt.Sprintf("immediate_claim: %q is not one of true, false, yes, no, 1, 0", v))
				continue
			}
			fields[col] = json.RawMessage(strconv.FormatBool(b))
		case "metadata":
			if v[0] != '{' || !json.Valid([]byte(v)) {
				reasons = append(reasons, "metadata: must be a JSON object, such as {\"team\": \"red\"}")
				continue
			}
			fields[col] = json.RawMessage(v)
		default:
			s, _ := json.Marshal(v) // strings always marshal
			fields[col] = s
		}
	}
	return p.row(line, fields, reasons)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func blankRecord(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "true", "yes", "1":
		return true, true
	case "false", "no", "0":
		return false, true
	}
	return false, false
}
