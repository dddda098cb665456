package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const testUUID = "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"

// roundTrip is the path of an accepted body: encoded into a queue message,
// decoded by the worker. It fails the test if anything is lost or changed.
func roundTrip(t *testing.T, body []byte, a SeatAssign) {
	t.Helper()
	r := Request{ID: testUUID, Op: OpAssign, CustomerID: testUUID, Assign: &a}
	data, err := r.Encode()
	if err != nil {
		t.Fatalf("the edge accepted %q but it cannot be queued: %v", body, err)
	}
	got, err := DecodeRequest(data)
	if err != nil {
		t.Fatalf("the edge accepted %q but the worker refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(*got.Assign, a) {
		t.Fatalf("changed on the way through the queue:\n sent %+v\n got  %+v", a, *got.Assign)
	}
	// The metadata is the client's own text, only compacted.
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(body, &fields)
	if raw, ok := fields["metadata"]; ok && !isNull(raw) {
		var want bytes.Buffer
		_ = json.Compact(&want, raw)
		if !bytes.Equal(got.Assign.Metadata, want.Bytes()) {
			t.Fatalf("metadata changed: sent %s, worker got %s", want.Bytes(), got.Assign.Metadata)
		}
	}
}

// FuzzEdgeQueueRoundTrip: any body the edge accepts survives encoding for
// the queue and decoding by the worker unchanged; the edge and the worker
// hold one definition of valid.
func FuzzEdgeQueueRoundTrip(f *testing.F) {
	base := `{"subscription_id":"` + testUUID + `","email":"a@example.com","metadata":`
	for _, m := range []string{
		`{"a":"<b>&amp;</b>"}`,
		`{"a":"` + strings.Repeat("<", 1000) + `"}`,
		`{"ls":"\u2028\u2029"}`,
		"{\"ls\":\"\u2028\"}",
		`{"s":"\ud800"}`,
		`{"s":"\ud83d\ude00"}`,
		`{"n":1e999999}`,
		`{"n":1e-999999}`,
		`{"n":-0.0e+2,"m":[1.5e300,true,null]}`,
		`{"a":1,"a":2}`,
		`{"a":{"b":1,"b":2}}`,
		"{\"a\":\"\xff\"}",
		`{"\u0061":1,"a":2}`,
		`{"x":"\\u0000"}`,
	} {
		f.Add([]byte(base + m + `}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, errs := DecodeSeatAssign(body)
		if errs != nil {
			return
		}
		roundTrip(t, body, a)
	})
}

// TestEdgeRulesMatchQueue: the bodies the probe found are refused or carried
// unchanged, never accepted and then refused by the queue.
func TestEdgeRulesMatchQueue(t *testing.T) {
	base := `{"subscription_id":"` + testUUID + `","email":"a@example.com","metadata":`
	accepted := []string{
		`{"a":"` + strings.Repeat("<>&", 300) + `"}`, // 900 bytes sent, 5,400 if escaped
		`{"a":"` + strings.Repeat("\u2028", 300) + `"}`,
		`{"e":"😀","p":"\ud83d\ude00","n":[1e308,-1e-300,0e5,0.0]}`,
		`{"x":"\\u0000 is text"}`,
	}
	for _, m := range accepted {
		body := []byte(base + m + `}`)
		a, errs := DecodeSeatAssign(body)
		if errs != nil {
			t.Errorf("refused %s: %v", m, errs)
			continue
		}
		roundTrip(t, body, a)
	}
	refused := map[string]string{
		"lone high surrogate":      `{"s":"\ud800"}`,
		"lone low surrogate":       `{"s":"x\udc00y"}`,
		"reversed pair":            `{"s":"\udc00\ud800"}`,
		"invalid UTF-8":            "{\"s\":\"\xc3\x28\"}",
		"huge number":              `{"n":1e999999}`,
		"tiny number":              `{"n":1e-999999}`,
		"zero with huge exponent":  `{"n":0e-999999}`,
		"duplicate key":            `{"a":1,"a":2}`,
		"duplicate escaped key":    `{"\u0061":1,"a":2}`,
		"duplicate nested key":     `{"a":{"b":1,"b":2}}`,
		"NUL":                      `{"s":"\u0000"}`,
		"over 1024 bytes compact":  `{"a":"` + strings.Repeat("x", 1020) + `"}`,
		"30 keys collapsing to 10": `{` + strings.TrimSuffix(strings.Repeat(`"a":1,"b":2,"c":3,`, 10), ",") + `}`,
	}
	for name, m := range refused {
		if _, errs := DecodeSeatAssign([]byte(base + m + `}`)); errs == nil {
			t.Errorf("%s: accepted %q", name, m)
		}
	}
	// Invalid UTF-8 or a surrogate elsewhere in the body is refused too,
	// rather than silently turned into U+FFFD.
	for _, body := range []string{
		`{"subscription_id":"` + testUUID + `","external_customer_id":"\ud800"}`,
		"{\"subscription_id\":\"" + testUUID + "\",\"external_customer_id\":\"\xff\"}",
		`{"subscription_id":"` + testUUID + `","email":"a@example.com","email":"b@example.com"}`,
		`{"subscription_id":"` + testUUID + `","external_customer_id":"ext\r\nX-Injected: 1"}`,
	} {
		if _, errs := DecodeSeatAssign([]byte(body)); errs == nil {
			t.Errorf("accepted %q", body)
		}
	}
}
