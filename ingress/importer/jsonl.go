package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// jsonFields are the fields a JSON Lines row may have: a SeatAssign's.
// Unlike the API, an import rejects unknown fields: a misspelt
// "immediate_claim" silently ignored would send a thousand invitations
// nobody wanted.
var jsonFields = []string{"subscription_id", "order_id", "checkout_id", "email", "external_customer_id",
	"customer_id", "external_member_id", "member_id", "metadata", "immediate_claim"}

// jsonl reads JSON Lines: one SeatAssign object a line; blank lines are
// skipped. A row may name the import's own pool, no other.
func (p *parser) jsonl(br *bufio.Reader) {
	for line := 1; ; line++ {
		raw, err := br.ReadSlice('\n')
		tooLong := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of an overlong line
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			p.yield(Row{}, err)
			return
		}
		switch {
		case tooLong:
			if !p.invalid(line, fmt.Sprintf("the line is longer than %d bytes", MaxRowBytes)) {
				return
			}
		case len(bytes.TrimSpace(bytes.TrimPrefix(raw, bom))) > 0:
			if !p.jsonRow(line, raw) {
				return
			}
		}
		if err != nil { // io.EOF
			return
		}
	}
}

func (p *parser) jsonRow(line int, raw []byte) bool {
	raw = bytes.TrimSpace(bytes.TrimPrefix(raw, bom))
	if raw[0] != '{' {
		return p.invalid(line, "a row must be a JSON object, such as {\"email\": \"alice@example.com\"}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return p.invalid(line, "the row is not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	var reasons []string
	var unknown []string
	for k := range fields {
		if !slices.Contains(jsonFields, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		reasons = append(reasons, fmt.Sprintf("unknown field %s; fields are %s", strings.Join(unknown, ", "),
			strings.Join(jsonFields, ", ")))
	}
	// The pool comes from the command line; a row naming a pool is allowed
	// only to name the same one, so a file meant for another pool is not
	// silently imported into this one.
	for _, field := range []string{"subscription_id", "order_id", "checkout_id"} {
		v, ok := fields[field]
		if !ok || string(v) == "null" {
			delete(fields, field)
			continue
		}
		var s string
		_ = json.Unmarshal(v, &s)
		if field == p.poolField && strings.EqualFold(s, p.poolID) {
			delete(fields, field)
			continue
		}
		want := fmt.Sprintf("the import is for %s %s", poolKind(p.poolField), p.poolID)
		if field == "checkout_id" {
			reasons = append(reasons, "checkout_id: rows cannot name a checkout; "+want)
		} else {
			reasons = append(reasons, fmt.Sprintf("%s: the row names %s %s, but %s", field, poolKind(field), string(v), want))
		}
		delete(fields, field)
	}
	return p.row(line, fields, reasons)
}
