package events

import "encoding/json"

// Encode serialises a Request for publishing after checking it, so that no
// malformed message is ever published.
func (r Request) Encode() ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}
