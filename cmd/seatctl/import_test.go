package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress/importer"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// importEnv is a running pipeline (Postgres, JetStream, worker) with a
// customer who bought seats, and seatctl's environment pointing at it.
type importEnv struct {
	*seatdtest.Env
	ten seatdtest.Tenant
	dir string
}

func setupImport(t testing.TB, opts seatdtest.Options, seats int) *importEnv {
	t.Helper()
	e := seatdtest.New(t, opts)
	ten := e.Tenant(seatdtest.TenantOptions{Seats: seats})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("NATS_URL", e.Server.ClientURL())
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	return &importEnv{Env: e, ten: ten, dir: t.TempDir()}
}

type importResult struct {
	sum    importer.Summary
	stdout string
	stderr string
	err    error
}

// importFile runs `seatctl import --subscription <the tenant's> args...`.
func (ie *importEnv) importFile(t testing.TB, ctx context.Context, stdin string, args ...string) importResult {
	t.Helper()
	return ie.seatctl(t, ctx, stdin, append([]string{"import", "--subscription", ie.ten.SubscriptionID}, args...)...)
}

func (ie *importEnv) seatctl(t testing.TB, ctx context.Context, stdin string, args ...string) importResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	res := importResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if res.stdout != "" {
		if strings.Count(strings.TrimSpace(res.stdout), "\n") != 0 {
			t.Fatalf("stdout holds more than one line:\n%s", res.stdout)
		}
		if err := json.Unmarshal(stdout.Bytes(), &res.sum); err != nil {
			t.Fatalf("stdout is not the summary: %v\n%s", err, res.stdout)
		}
	}
	return res
}

func (ie *importEnv) write(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(ie.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// seats lists the tenant subscription's seats, by email.
func (ie *importEnv) seats(t testing.TB) map[string]events.CustomerSeat {
	t.Helper()
	list, err := ie.DB.ListSeats(context.Background(), storage.Owner{CustomerID: ie.ten.CustomerID}, ie.ten.SubscriptionID, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]events.CustomerSeat{}
	for _, s := range list.Seats {
		email := ""
		if s.CustomerEmail != nil {
			email = strings.ToLower(*s.CustomerEmail)
		}
		if _, dup := out[email]; dup {
			t.Errorf("two seats for %s", email)
		}
		out[email] = s
	}
	if used := list.TotalSeats - list.AvailableSeats; used != len(list.Seats) {
		t.Errorf("pool counts %d seats used, holds %d", used, len(list.Seats))
	}
	return out
}

func (ie *importEnv) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := ie.DB.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return -1
}

func wantSummary(t *testing.T, res importResult, want importer.Summary) {
	t.Helper()
	got := res.sum
	if want.Failed == nil {
		want.Failed = map[string]int{}
	}
	// Fields that vary from run to run.
	got.Seconds, want.Seconds = 0, 0
	got.File, want.File = "", ""
	got.SubscriptionID, want.SubscriptionID = "", ""
	got.Report, want.Report = "", ""
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("summary\n got %s\nwant %s\nstderr:\n%s", g, w, res.stderr)
	}
}

func wantMetadata(t *testing.T, s events.CustomerSeat, want string) {
	t.Helper()
	if want == "" {
		if len(s.SeatMetadata) != 0 && string(s.SeatMetadata) != "null" {
			t.Errorf("seat %s has metadata %s, want none", s.ID, s.SeatMetadata)
		}
		return
	}
	var g, w any
	_ = json.Unmarshal(s.SeatMetadata, &g)
	_ = json.Unmarshal([]byte(want), &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("seat %s has metadata %s, want %s", s.ID, s.SeatMetadata, want)
	}
}

// checkSeats asserts the seats of testdata/seats.{csv,jsonl}.
func checkSeats(t *testing.T, ie *importEnv) {
	t.Helper()
	seats := ie.seats(t)
	want := map[string]struct {
		status events.SeatStatus
		meta   string
	}{
		"alice@example.com": {events.SeatClaimed, `{"team":"red"}`},
		"bob@example.com":   {events.SeatPending, ""},
		"carol@example.com": {events.SeatPending, `{"team":"blue","level":2}`},
	}
	if _, csv := seats["dave@example.com"]; csv {
		want["dave@example.com"] = struct {
			status events.SeatStatus
			meta   string
		}{events.SeatClaimed, ""}
	}
	if len(seats) != len(want) {
		t.Errorf("%d seats, want %d: %v", len(seats), len(want), slices.Collect(maps.Keys(seats)))
	}
	for email, w := range want {
		s, ok := seats[email]
		if !ok {
			t.Errorf("no seat for %s", email)
			continue
		}
		if s.Status != w.status {
			t.Errorf("%s: status %s, want %s", email, s.Status, w.status)
		}
		if w.status == events.SeatPending && s.InvitationTokenExpiresAt == nil {
			t.Errorf("%s: pending seat without invitation", email)
		}
		wantMetadata(t, s, w.meta)
	}
}

func TestImportCSV(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	res := ie.importFile(t, t.Context(), "", "testdata/seats.csv")
	if res.err != nil {
		t.Fatalf("import: %v\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", Rows: 4, Valid: 4, Published: 4, Succeeded: 4})
	checkSeats(t, ie)
	if got := ie.seats(t)["dave@example.com"]; got.CustomerEmail == nil || *got.CustomerEmail != "Dave@Example.com" {
		t.Errorf("the address is kept as written: %v", got.CustomerEmail)
	}
	// Progress goes to stderr as plain lines when it is not a terminal.
	if !strings.Contains(res.stderr, "seatctl import: 4/4 rows done (0 failed), 0 queued") {
		t.Errorf("no final progress line on stderr:\n%s", res.stderr)
	}
	// The imported requests are ordinary requests of the pool's owner.
	if n := ie.count(t, `SELECT count(*) FROM requests WHERE caller = $1 AND status = 'succeeded'`, ie.ten.CustomerID); n != 4 {
		t.Errorf("%d succeeded requests of the owner in the ledger, want 4", n)
	}
}

func TestImportJSONL(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	res := ie.importFile(t, t.Context(), "", "testdata/seats.jsonl")
	if res.err != nil {
		t.Fatalf("import: %v\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "jsonl", Rows: 3, Valid: 3, Published: 3, Succeeded: 3})
	checkSeats(t, ie)
}

// Every recipient column, and an order as the pool.
func TestImportRecipientsIntoOrder(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 1)
	ctx := t.Context()
	order := storagetest.Pool(t, ie.DB, "order", ie.ten.CustomerID, "Seats", 5, "paid")
	known := seatdtest.Must(ie.DB.CreateCustomer(ctx, ie.ten.OrgID, "known@example.com", ""))
	seatdtest.Must(ie.DB.CreateCustomer(ctx, ie.ten.OrgID, "external@example.com", "crm-42"))
	path := ie.write(t, "order.csv", "customer_id,external_customer_id,email\n"+
		known+",,\n"+
		",crm-42,\n"+
		",,new@example.com\n"+
		",crm-404,\n")
	res := ie.seatctl(t, ctx, "", "import", "--order", strings.ToUpper(order), path)
	if exitCode(res.err) != 1 {
		t.Fatalf("import: %v, want exit status 1\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", OrderID: order, Rows: 4, Valid: 4, Published: 4, Succeeded: 3,
		Failed: map[string]int{"customer_not_found": 1}})
	list, err := ie.DB.ListSeats(ctx, storage.Owner{CustomerID: ie.ten.CustomerID}, "", order)
	if err != nil {
		t.Fatal(err)
	}
	var emails []string
	for _, s := range list.Seats {
		emails = append(emails, *s.CustomerEmail)
	}
	slices.Sort(emails)
	if want := []string{"external@example.com", "known@example.com", "new@example.com"}; !slices.Equal(emails, want) {
		t.Errorf("order seats for %v, want %v", emails, want)
	}
}

func TestImportInvalidRows(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	report := filepath.Join(ie.dir, "report.csv")
	res := ie.importFile(t, t.Context(), "", "--report", report, "testdata/invalid.csv")
	if exitCode(res.err) != 1 {
		t.Fatalf("import: %v, want exit status 1\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", Rows: 7, Valid: 3, Invalid: 4, Published: 3, Succeeded: 3})
	for _, want := range []string{
		"line 3: email: value is not a valid email address: not a plain address of the form name@example.com\n",
		`line 4: immediate_claim: "maybe" is not one of true, false, yes, no, 1, 0` + "\n",
		`line 5: metadata: must be a JSON object, such as {"team": "red"}` + "\n",
		"line 6: the record has 1 field, the header has 3\n",
		"seatctl import: 3 rows succeeded, 0 failed, 4 invalid\n",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
	// The valid rows went through regardless.
	seats := ie.seats(t)
	if len(seats) != 3 || seats["alice@example.com"].Status != events.SeatClaimed ||
		seats["erin@example.com"].Status != events.SeatPending || seats["frank@example.com"].Status != events.SeatPending {
		t.Errorf("seats after an import with invalid rows: %v", slices.Collect(maps.Keys(seats)))
	}
	wantMetadata(t, seats["erin@example.com"], `{"k":1}`)

	rows := readReport(t, report)
	if len(rows) != 7 {
		t.Fatalf("report has %d rows, want 7", len(rows))
	}
	for i, r := range rows {
		if r.Line != i+2 {
			t.Errorf("report row %d is line %d", i, r.Line)
		}
		invalid := r.Line >= 3 && r.Line <= 6
		switch {
		case invalid && (r.Status != "invalid" || r.Error == nil || r.RequestID != nil || r.SeatID != nil):
			t.Errorf("line %d: %+v, want an invalid row with its reason", r.Line, r)
		case !invalid && (r.Status != "succeeded" || r.RequestID == nil || r.SeatID == nil || r.Error != nil):
			t.Errorf("line %d: %+v, want a succeeded row with request and seat", r.Line, r)
		case !invalid:
			seat := seats[[]string{2: "alice@example.com", 7: "erin@example.com", 8: "frank@example.com"}[r.Line]]
			if *r.SeatID != seat.ID {
				t.Errorf("line %d: report names seat %s, the seat is %s", r.Line, *r.SeatID, seat.ID)
			}
		}
	}
	if *rows[1].Error != "email: value is not a valid email address: not a plain address of the form name@example.com" {
		t.Errorf("line 3 error: %q", *rows[1].Error)
	}
}

// readReport reads a CSV or JSONL report into rows.
func readReport(t *testing.T, path string) []importer.ReportRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only
	var rows []importer.ReportRow
	if strings.HasSuffix(path, ".jsonl") {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r importer.ReportRow
			dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("report line %q: %v", sc.Text(), err)
			}
			rows = append(rows, r)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("reading report %s: %v", path, err)
		}
		return rows
	}
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatal("empty report, want a header line,request_id,status,seat_id,error")
	}
	if !slices.Equal(recs[0], []string{"line", "request_id", "status", "seat_id", "error"}) {
		t.Fatalf("report header %v, want line,request_id,status,seat_id,error", recs[0])
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	for _, rec := range recs[1:] {
		var r importer.ReportRow
		if _, err := fmt.Sscan(rec[0], &r.Line); err != nil {
			t.Fatalf("report line %q: %v", rec, err)
		}
		r.RequestID, r.Status, r.SeatID, r.Error = opt(rec[1]), rec[2], opt(rec[3]), opt(rec[4])
		rows = append(rows, r)
	}
	return rows
}

func TestImportDryRun(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	ctx := t.Context()
	report := filepath.Join(ie.dir, "dry.jsonl")
	res := ie.importFile(t, ctx, "", "--dry-run", "--report", report, "testdata/invalid.csv")
	if exitCode(res.err) != 1 {
		t.Fatalf("dry run with invalid rows: %v, want exit status 1\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", DryRun: true, Rows: 7, Valid: 3, Invalid: 4, Unpublished: 3})
	if !strings.Contains(res.stderr, "line 3: email:") {
		t.Errorf("a dry run lists the invalid rows too:\n%s", res.stderr)
	}
	if n := ie.count(t, `SELECT count(*) FROM requests`); n != 0 {
		t.Errorf("dry run left %d requests in the ledger", n)
	}
	info, err := ie.JS.Stream(ctx, events.RequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo().State; st.Msgs != 0 || st.LastSeq != 0 {
		t.Errorf("dry run published: %+v", st)
	}
	if seats := ie.seats(t); len(seats) != 0 {
		t.Errorf("dry run assigned %d seats", len(seats))
	}
	statuses := map[string]int{}
	for _, r := range readReport(t, report) {
		statuses[r.Status]++
	}
	if statuses["valid"] != 3 || statuses["invalid"] != 4 {
		t.Errorf("dry-run report statuses %v", statuses)
	}

	// After the import, a dry run sees every row done.
	if res := ie.importFile(t, ctx, "", "testdata/seats.csv"); res.err != nil {
		t.Fatalf("import: %v\n%s", res.err, res.stderr)
	}
	res = ie.importFile(t, ctx, "", "--dry-run", "testdata/seats.csv")
	if res.err != nil {
		t.Fatalf("dry run: %v\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", DryRun: true, Rows: 4, Valid: 4, AlreadyDone: 4, Succeeded: 4})
}

// Running the same file again changes nothing, under any name, and the
// report still tells each row's seat.
func TestImportRerun(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	ctx := t.Context()
	first := ie.importFile(t, ctx, "", "--report", filepath.Join(ie.dir, "first.jsonl"), "testdata/seats.csv")
	if first.err != nil {
		t.Fatalf("import: %v\n%s", first.err, first.stderr)
	}
	before := ie.seats(t)
	content, err := os.ReadFile("testdata/seats.csv")
	if err != nil {
		t.Fatal(err)
	}
	again := ie.write(t, "renamed.csv", string(content))
	second := ie.importFile(t, ctx, "", "--report", filepath.Join(ie.dir, "second.jsonl"), again)
	if second.err != nil {
		t.Fatalf("re-import: %v\n%s", second.err, second.stderr)
	}
	wantSummary(t, second, importer.Summary{Format: "csv", Rows: 4, Valid: 4, AlreadyDone: 4, Succeeded: 4})
	after := ie.seats(t)
	if len(after) != len(before) {
		t.Fatalf("re-import changed the seats: %d → %d", len(before), len(after))
	}
	for email, s := range before {
		if after[email].ID != s.ID || after[email].Status != s.Status {
			t.Errorf("%s: seat %s %s became %s %s", email, s.ID, s.Status, after[email].ID, after[email].Status)
		}
	}
	if n := ie.count(t, `SELECT count(*) FROM requests`); n != 4 {
		t.Errorf("%d requests in the ledger, want 4", n)
	}
	r1, r2 := readReport(t, filepath.Join(ie.dir, "first.jsonl")), readReport(t, filepath.Join(ie.dir, "second.jsonl"))
	if !slices.EqualFunc(r1, r2, func(a, b importer.ReportRow) bool {
		return a.Line == b.Line && *a.RequestID == *b.RequestID && a.Status == b.Status && *a.SeatID == *b.SeatID
	}) {
		t.Errorf("the reports of both runs differ:\n%+v\n%+v", r1, r2)
	}

	// One changed byte is another file: its rows are new requests, and the
	// worker refuses a second seat for the same people.
	edited := ie.write(t, "edited.csv", string(content)+"\n")
	third := ie.importFile(t, ctx, "", edited)
	if exitCode(third.err) != 1 {
		t.Fatalf("edited re-import: %v, want exit status 1\n%s", third.err, third.stderr)
	}
	wantSummary(t, third, importer.Summary{Format: "csv", Rows: 4, Valid: 4, Published: 4, Failed: map[string]int{"already_assigned": 4}})
	if got := ie.seats(t); len(got) != len(before) {
		t.Errorf("%d seats after the edited re-import, want %d", len(got), len(before))
	}
}

func TestImportStdin(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	ctx := t.Context()
	content, err := os.ReadFile("testdata/seats.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	res := ie.importFile(t, ctx, string(content), "-")
	if res.err != nil {
		t.Fatalf("import from stdin: %v\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "jsonl", Rows: 3, Valid: 3, Published: 3, Succeeded: 3})
	checkSeats(t, ie)
	// Request ids come from the content: the same rows from a file are
	// the same requests.
	res = ie.importFile(t, ctx, "", "testdata/seats.jsonl")
	if res.err != nil {
		t.Fatalf("import: %v\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "jsonl", Rows: 3, Valid: 3, AlreadyDone: 3, Succeeded: 3})
	if leftovers, _ := filepath.Glob(filepath.Join(os.TempDir(), "seatctl-import-*")); len(leftovers) > 0 {
		t.Errorf("the stdin spool was left behind: %v", leftovers)
	}
}

func TestImportPoolTooSmall(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 3)
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 5 {
		fmt.Fprintf(&b, "user%d@example.com\n", i)
	}
	report := filepath.Join(ie.dir, "report.jsonl")
	res := ie.importFile(t, t.Context(), "", "--report", report, ie.write(t, "five.csv", b.String()))
	if exitCode(res.err) != 1 {
		t.Fatalf("import: %v, want exit status 1\n%s", res.err, res.stderr)
	}
	wantSummary(t, res, importer.Summary{Format: "csv", Rows: 5, Valid: 5, Published: 5, Succeeded: 3,
		Failed: map[string]int{"no_available_seats": 2}})
	if !strings.Contains(res.stderr, "seatctl import: 3 rows succeeded, 2 failed, 0 invalid") {
		t.Errorf("stderr:\n%s", res.stderr)
	}
	if seats := ie.seats(t); len(seats) != 3 {
		t.Errorf("%d seats in a pool of 3", len(seats))
	}
	failed := 0
	for _, r := range readReport(t, report) {
		if r.Status == "failed" {
			failed++
			if r.Error == nil || *r.Error != "no_available_seats: No available seats for "+ie.ten.SubscriptionID || r.SeatID != nil || r.RequestID == nil {
				t.Errorf("failed row %+v", r)
			}
		}
	}
	if failed != 2 {
		t.Errorf("report has %d failed rows, want 2", failed)
	}
}

// An import interrupted half-way (Ctrl-C) and run again ends with exactly
// one seat per row.
func TestImportInterruptedAndResumed(t *testing.T) {
	const rows = 300
	ie := setupImport(t, seatdtest.Options{}, rows)
	var b strings.Builder
	b.WriteString("email,immediate_claim\n")
	for i := range rows {
		fmt.Fprintf(&b, "user%03d@example.com,%v\n", i, i%2 == 0)
	}
	path := ie.write(t, "big.csv", b.String())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { // Ctrl-C once the worker has applied some rows
		for ctx.Err() == nil {
			var n int
			_ = ie.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE status = 'succeeded'`).Scan(&n)
			if n >= 40 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// A small window keeps the import from racing ahead of the worker.
	first := ie.importFile(t, ctx, "", "--in-flight", "10", path)
	if exitCode(first.err) != 3 {
		t.Fatalf("interrupted import: %v, want exit status 3\n%s", first.err, first.stderr)
	}
	t.Logf("interrupted run: %+v", first.sum)
	if first.sum.Stopped != "interrupted" || first.sum.Published >= rows || first.sum.Unpublished == 0 {
		t.Errorf("interrupted summary %+v", first.sum)
	}
	if !strings.Contains(first.stderr, "interrupted") || !strings.Contains(first.stderr, "run the same command again to resume") {
		t.Errorf("stderr does not say how to resume:\n%s", first.stderr)
	}

	second := ie.importFile(t, t.Context(), "", path)
	if second.err != nil {
		t.Fatalf("resumed import: %v\n%s", second.err, second.stderr)
	}
	s := second.sum
	t.Logf("resumed run: %+v", s)
	if s.Succeeded != rows || s.AlreadyDone < 40 || s.AlreadyDone+s.Published != rows || s.Queued != 0 || s.Unpublished != 0 {
		t.Errorf("resumed summary %+v", s)
	}
	seats := ie.seats(t)
	if len(seats) != rows {
		t.Errorf("%d seats after resuming, want %d", len(seats), rows)
	}
	for i := range rows {
		s, ok := seats[fmt.Sprintf("user%03d@example.com", i)]
		if want := map[bool]events.SeatStatus{true: events.SeatClaimed, false: events.SeatPending}[i%2 == 0]; !ok || s.Status != want {
			t.Errorf("row %d: seat %v %s, want %s", i, ok, s.Status, want)
		}
	}
	if n := ie.count(t, `SELECT count(*) FROM requests`); n != rows {
		t.Errorf("%d requests in the ledger, want %d", n, rows)
	}
}

// With no worker, the import gives up at --timeout and says so; once a
// worker runs, the same command finishes the job.
func TestImportTimeoutResumes(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{Workers: -1}, 10)
	first := ie.importFile(t, t.Context(), "", "--timeout", "300ms", "testdata/seats.jsonl")
	if exitCode(first.err) != 3 {
		t.Fatalf("import without worker: %v, want exit status 3\n%s", first.err, first.stderr)
	}
	wantSummary(t, first, importer.Summary{Format: "jsonl", Rows: 3, Valid: 3, Published: 3, Queued: 3, Stopped: "timeout"})
	if !strings.Contains(first.stderr, "timed out after 300ms: 3 rows published and still queued, 0 not published; run the same command again to resume") {
		t.Errorf("stderr:\n%s", first.stderr)
	}

	// The second run publishes the rows again and waits; a worker comes up
	// meanwhile.
	var stdout bytes.Buffer
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"import", "--subscription", ie.ten.SubscriptionID, "testdata/seats.jsonl"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	seatdtest.WaitFor(t, 30*time.Second, "the second run to wait for the worker", func() bool {
		return strings.Contains(stderr.String(), "0/3 rows done (0 failed), 3 queued")
	})
	ie.StartWorker()
	if err := <-done; err != nil {
		t.Fatalf("resumed import: %v\n%s", err, stderr.String())
	}
	var second importer.Summary
	if err := json.Unmarshal(stdout.Bytes(), &second); err != nil {
		t.Fatal(err)
	}
	if second.Succeeded != 3 || second.Published != 3 || second.AlreadyDone != 0 {
		t.Errorf("resumed summary %+v", second)
	}
	// Published twice (the second time deduplicated by JetStream or by the
	// ledger), applied once.
	checkSeats(t, ie)
	if n := ie.count(t, `SELECT count(*) FROM requests`); n != 3 {
		t.Errorf("%d requests in the ledger, want 3", n)
	}
}

// lockedBuffer is a bytes.Buffer a test may read while the command writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestImportUsageErrors(t *testing.T) {
	ie := setupImport(t, seatdtest.Options{}, 10)
	ctx := t.Context()
	sub := ie.ten.SubscriptionID
	unknownCol := ie.write(t, "unknown.csv", "email,team\na@example.com,red\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "testdata/seats.csv"}, "give exactly one of --subscription or --order"},
		{[]string{"import", "--subscription", sub, "--order", sub, "testdata/seats.csv"}, "give exactly one of --subscription or --order"},
		{[]string{"import", "--subscription", "nope", "testdata/seats.csv"}, `pool id "nope" is not a UUID`},
		{[]string{"import", "--subscription", sub}, "give exactly one FILE"},
		{[]string{"import", "--subscription", sub, "a.csv", "b.csv"}, "give exactly one FILE"},
		{[]string{"import", "--subscription", sub, "--report", "out.txt", "testdata/seats.csv"}, "the name must end in .csv or .jsonl"},
		{[]string{"import", "--subscription", sub, "--report", "/nonexistent/dir/r.csv", "testdata/seats.csv"}, "--report"},
		{[]string{"import", "--subscription", sub, "testdata/missing.csv"}, "no such file"},
		{[]string{"import", "--subscription", "00000000-0000-4000-8000-000000000000", "testdata/seats.csv"}, "subscription 00000000-0000-4000-8000-000000000000 not found"},
		{[]string{"import", "--subscription", sub, unknownCol}, `unknown.csv: CSV header: unknown column "team"`},
	} {
		res := ie.seatctl(t, ctx, "", tc.args...)
		if res.err == nil || !strings.Contains(res.err.Error(), tc.want) {
			t.Errorf("seatctl %v: error %v, want %q", tc.args, res.err, tc.want)
		}
		if res.stdout != "" {
			t.Errorf("seatctl %v printed %q", tc.args, res.stdout)
		}
	}
	if n := ie.count(t, `SELECT count(*) FROM requests`); n != 0 {
		t.Errorf("failed commands left %d requests", n)
	}
}
