package importer_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress/importer"
)

const (
	sub   = "11111111-1111-4111-8111-111111111111"
	other = "22222222-2222-4222-8222-222222222222"
	cust  = "33333333-3333-4333-8333-333333333333"
)

// parse collects every row of a file for subscription sub.
func parse(t *testing.T, name, data string) ([]importer.Row, error) {
	t.Helper()
	var rows []importer.Row
	for row, err := range importer.Parse(strings.NewReader(data), importer.ParseOptions{SubscriptionID: sub, Name: name}) {
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// summary renders rows as "line: ok email" or "line: <reason>" for compact
// comparison.
func summary(rows []importer.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		if r.Err != nil {
			out[i] = r.Err.Error()
			continue
		}
		a := r.Assign
		desc := a.Email + a.ExternalCustomerID + a.CustomerID
		if a.ImmediateClaim {
			desc += " claim"
		}
		if len(a.Metadata) > 0 {
			desc += " " + string(a.Metadata)
		}
		out[i] = "line " + itoa(r.Line) + ": ok " + desc
	}
	return out
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestParseCSV(t *testing.T) {
	data := "\ufeffEmail, immediate_claim ,metadata\n" +
		"alice@example.com,,\n" +
		"bob@example.com,yes,\"{\"\"team\"\": \"\"red\"\"}\"\n" +
		"\n" +
		"not-an-email,no,\n" +
		"carol@example.com,maybe,\n" +
		"dave@example.com,0,[1]\n" +
		",,\n" +
		"erin@example.com,TRUE\n" +
		"\"frank@example.com\nx\",1,\n" +
		" grace@example.com ,1,{}\n"
	rows, err := parse(t, "seats.csv", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"line 2: ok alice@example.com",
		`line 3: ok bob@example.com claim {"team":"red"}`,
		"line 5: email: value is not a valid email address: not a plain address of the form name@example.com",
		`line 6: immediate_claim: "maybe" is not one of true, false, yes, no, 1, 0`,
		`line 7: metadata: must be a JSON object, such as {"team": "red"}`,
		"line 9: the record has 2 fields, the header has 3",
		"line 10: email: value is not a valid email address: the address contains invalid characters", // a line feed
		"line 12: ok grace@example.com claim {}",
	}
	got := summary(rows)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range rows {
		if r.Err == nil && r.Assign.SubscriptionID != sub {
			t.Errorf("line %d: pool %q, want the import's", r.Line, r.Assign.SubscriptionID)
		}
	}
}

func TestParseCSVRecipients(t *testing.T) {
	data := "email,external_customer_id,customer_id\n" +
		"alice@example.com,,\n" +
		",ext-42,\n" +
		",," + cust + "\n" +
		"bob@example.com,ext-43,\n" +
		",,not-a-uuid\n"
	rows, err := parse(t, "x.csv", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"line 2: ok alice@example.com",
		"line 3: ok ext-42",
		"line 4: ok " + cust,
		"line 5: Exactly one of email, external_customer_id, or customer_id must be provided",
		"line 6: customer_id: Input should be a valid UUID",
	}
	if got := summary(rows); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseCSVHeaderErrors(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "the file is empty"},
		{"blank", "\n\n", "the file is empty"},
		{"unknown", "email,team,Seat\n", `unknown columns "team", "seat"; columns are email, external_customer_id, customer_id, immediate_claim, metadata`},
		{"pool column", "subscription_id,email\n", "column subscription_id is not allowed: the pool is given with --subscription or --order"},
		{"duplicate", "email,Email\n", `column "email" appears twice`},
		{"unnamed", "email,,metadata\n", "column 2 has no name"},
		{"no recipient", "immediate_claim,metadata\n", "CSV header names no recipient column"},
		{"bad quote", "\"email\n", "line 1: the CSV header cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := parse(t, "f.csv", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if len(rows) != 0 {
				t.Errorf("yielded %d rows before the header error", len(rows))
			}
		})
	}
}

func TestParseJSONL(t *testing.T) {
	lines := []string{
		`{"email": "alice@example.com", "immediate_claim": true, "metadata": {"team": "red"}}`,
		``,
		`{"email": "bob@example.com", "subscription_id": "` + strings.ToUpper(sub) + `"}`,
		`{"email": "carol@example.com", "subscription_id": "` + other + `"}`,
		`{"email": "dave@example.com", "order_id": "` + other + `"}`,
		`{"email": "erin@example.com", "checkout_id": "` + other + `"}`,
		`{"email": "frank@example.com", "immediate_clam": true}`,
		`{"email": "grace@example.com", "immediate_claim": "yes"}`,
		`{"email": "heidi@example.com"`,
		`["ivan@example.com"]`,
		`null`,
		`  {"external_customer_id": "ext-1", "subscription_id": null}  `,
		`{"customer_id": "` + cust + `", "email": "judy@example.com"}`,
		`{"email": "kim@example.com", "metadata": {"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11}}`,
		"{\"email\": \"\\u0000@example.com\"}\r",
		`{"email": "last@example.com"}`, // no trailing newline
	}
	rows, err := parse(t, "", strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`line 1: ok alice@example.com claim {"team":"red"}`,
		`line 3: ok bob@example.com`,
		`line 4: subscription_id: the row names subscription "` + other + `", but the import is for subscription ` + sub,
		`line 5: order_id: the row names order "` + other + `", but the import is for subscription ` + sub,
		`line 6: checkout_id: rows cannot name a checkout; the import is for subscription ` + sub,
		`line 7: unknown field "immediate_clam"; fields are subscription_id, order_id, checkout_id, email, external_customer_id, customer_id, external_member_id, member_id, metadata, immediate_claim`,
		`line 8: immediate_claim: Input should be a valid boolean`,
		`line 9: the row is not valid JSON: unexpected end of JSON input`,
		`line 10: a row must be a JSON object, such as {"email": "alice@example.com"}`,
		`line 11: a row must be a JSON object, such as {"email": "alice@example.com"}`,
		`line 12: ok ext-1`,
		`line 13: Exactly one of email, external_customer_id, or customer_id must be provided`,
		`line 14: metadata: Metadata can have at most 10 keys`,
		`line 15: email: value is not a valid email address: the address contains invalid characters`, // NUL
		`line 16: ok last@example.com`,
	}
	if got := summary(rows); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseJSONLLongLine(t *testing.T) {
	long := `{"email": "a@example.com", "metadata": {"x": "` + strings.Repeat("y", importer.MaxRowBytes) + `"}}`
	rows, err := parse(t, "f.jsonl", long+"\n"+`{"email": "b@example.com"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"line 1: the line is longer than 65536 bytes",
		"line 2: ok b@example.com",
	}
	if got := summary(rows); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseOrderPool(t *testing.T) {
	data := `{"email": "a@example.com", "order_id": "` + other + `"}` + "\n" + `{"email": "b@example.com", "subscription_id": "` + sub + `"}`
	var got []string
	for row, err := range importer.Parse(strings.NewReader(data), importer.ParseOptions{OrderID: other}) {
		if err != nil {
			t.Fatal(err)
		}
		if row.Err == nil && (row.Assign.OrderID != other || row.Assign.SubscriptionID != "") {
			t.Errorf("line %d: assign %+v is not for order %s", row.Line, row.Assign, other)
		}
		got = append(got, summary([]importer.Row{row})...)
	}
	want := []string{
		"line 1: ok a@example.com",
		`line 2: subscription_id: the row names subscription "` + sub + `", but the import is for order ` + other,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       importer.Format
	}{
		{"seats.jsonl", "email\n", importer.JSONL},
		{"SEATS.NDJSON", "", importer.JSONL},
		{"seats.csv", "{", importer.CSV},
		{"-", "\n  \ufeff{\"email\": 1}", importer.CSV}, // a BOM after blank lines is not at the start
		{"-", "\ufeff\n  {\"email\": 1}", importer.JSONL},
		{"seats.txt", "email\n{", importer.CSV},
		{"", "", importer.CSV},
	} {
		if got := importer.DetectFormat(tc.name, []byte(tc.head)); got != tc.want {
			t.Errorf("DetectFormat(%q, %q) = %v, want %v", tc.name, tc.head, got, tc.want)
		}
	}
}

func TestParseStopsEarly(t *testing.T) {
	data := "email\na@example.com\nb@example.com\nc@example.com\n"
	n := 0
	for row, err := range importer.Parse(strings.NewReader(data), importer.ParseOptions{SubscriptionID: sub}) {
		if err != nil {
			t.Fatal(err) // an error is not the first row
		}
		if row.Err != nil || row.Assign.Email != "a@example.com" {
			t.Fatalf("first row %+v, want a@example.com", row)
		}
		n++
		break
	}
	if n != 1 {
		t.Fatalf("got %d rows", n)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("email\na@example.com\n"), iotest.ErrReader(boom))
	var rows int
	var err error
	for _, e := range importer.Parse(r, importer.ParseOptions{SubscriptionID: sub, Format: importer.CSV}) {
		if e != nil {
			err = e
			break
		}
		rows++
	}
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if rows != 1 {
		t.Errorf("rows before the error: %d", rows)
	}
}

func TestParseNeedsPool(t *testing.T) {
	for _, opts := range []importer.ParseOptions{{}, {SubscriptionID: "nope"}, {SubscriptionID: sub, OrderID: other}} {
		for _, err := range importer.Parse(strings.NewReader("email\n"), opts) {
			if err == nil {
				t.Errorf("Parse(%+v) accepted the options", opts)
			}
			break
		}
	}
}

// Every accepted row is what the API would accept.
func checkAccepted(t *testing.T, row importer.Row, opts importer.ParseOptions) {
	t.Helper()
	if errs := row.Assign.Validate(); errs != nil {
		t.Fatalf("line %d: accepted row fails validation: %v", row.Line, (&events.ValidationError{Detail: errs}).Error())
	}
	if row.Assign.SubscriptionID != opts.SubscriptionID || row.Assign.OrderID != opts.OrderID || row.Assign.CheckoutID != "" {
		t.Fatalf("line %d: accepted row is for another pool: %+v", row.Line, row.Assign)
	}
}
