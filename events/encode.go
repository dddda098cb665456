package events

import (
	"bytes"
	"encoding/json"
)

// Marshal is the one JSON encoding of seatd's messages: encoding/json
// without HTML escaping, so a SeatAssign's metadata (kept as the compact
// text the client sent) is carried byte for byte, and what the edge
// measured is what the queue, the ledger and the worker measure.
// encoding/json's default would rewrite <, >, & and U+2028 as six-byte
// escapes, turning metadata that fit into metadata that does not.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Encode serialises a Request for publishing after checking it, so that no
// malformed message is ever published.
func (r Request) Encode() ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	return Marshal(r)
}
