package importer_test

import (
	"bytes"
	"testing"

	"github.com/seatd/seatd/ingress/importer"
)

// FuzzParse feeds arbitrary files to the parser. It must not panic, must
// end, must number rows in increasing order, and every row it accepts must
// be one the API would accept, for the import's pool. format picks the
// parser: 0 detects, 1 is CSV, 2 is JSON Lines.
func FuzzParse(f *testing.F) {
	f.Add([]byte("email,immediate_claim,metadata\nalice@example.com,yes,\"{\"\"a\"\":1}\"\n"), uint8(0))
	f.Add([]byte(`{"email":"a@example.com","immediate_claim":true}`+"\n\n"+`{"customer_id":"33333333-3333-4333-8333-333333333333"}`), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		opts := importer.ParseOptions{SubscriptionID: sub, Format: importer.Format(format % 3)}
		last := 0
		for row, err := range importer.Parse(bytes.NewReader(data), opts) {
			if err != nil {
				return
			}
			if row.Line <= last {
				t.Fatalf("row at line %d after line %d", row.Line, last)
			}
			last = row.Line
			if row.Err != nil {
				if row.Err.Line != row.Line || len(row.Err.Reasons) == 0 {
					t.Fatalf("row error %+v for line %d", row.Err, row.Line)
				}
				continue
			}
			checkAccepted(t, row, opts)
		}
	})
}
