package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/ingress"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// The process's life: start with next to no configuration, stop on
// SIGTERM after draining, stop at once on a second one, migrate from many
// replicas at once.

// waitHTTP waits until p answers GET base/readyz with 200: it is running.
func waitHTTP(t testing.TB, p *proc, base string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	waitFor(t, 30*time.Second, p.name+" answering /readyz", func() (bool, string) {
		if !p.Running() {
			t.Fatalf("%s exited before answering /readyz", p.name)
		}
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close() // the status is all we wanted
		return resp.StatusCode == 200, resp.Status
	})
}

// apiCall is one POST /v1/customer-portal/seats and what came of it.
type apiCall struct {
	tenant tenant
	key    string // Idempotency-Key: finds the request in the ledger
	status int
	body   []byte
	err    error
}

func postAssign(client *http.Client, base string, ten tenant, email string, async bool) apiCall {
	return postAssignKey(client, base, ten, email, uuid.NewString(), async)
}

// postAssignKey is postAssign with a given Idempotency-Key, for a client
// that retries.
func postAssignKey(client *http.Client, base string, ten tenant, email, key string, async bool) apiCall {
	c := apiCall{tenant: ten, key: key}
	body, _ := json.Marshal(map[string]any{"subscription_id": ten.subID, "email": email})
	req, err := http.NewRequest("POST", base+"/v1/customer-portal/seats", bytes.NewReader(body))
	if err != nil {
		c.err = err
		return c
	}
	req.Header.Set("Authorization", "Bearer "+ten.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", c.key)
	if async {
		req.Header.Set("Prefer", "respond-async")
	}
	resp, err := client.Do(req)
	if err != nil {
		c.err = err
		return c
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	c.status = resp.StatusCode
	c.body, c.err = io.ReadAll(resp.Body)
	return c
}

// slowPost starts a POST /v1/customer-portal/seats that sends its headers
// and half its body now; finish sends the rest and reads the answer. It
// stands for any request that is in flight when a signal arrives.
func slowPost(t testing.TB, addr string, ten tenant, email string) (finish func() apiCall) {
	t.Helper()
	c := apiCall{tenant: ten, key: uuid.NewString()}
	body, _ := json.Marshal(map[string]any{"subscription_id": ten.subID, "email": email})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // the server has closed it (Connection: close), or the test failed
	// Unless the first half is sent, no request is in flight.
	if _, err := fmt.Fprintf(conn, "POST /v1/customer-portal/seats HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		addr, ten.token, c.key, len(body), body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	return func() apiCall {
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write(body[len(body)/2:]); err != nil {
			c.err = err
			return c
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			c.err = err
			return c
		}
		defer func() { _ = resp.Body.Close() }() // read to the end below
		c.status = resp.StatusCode
		c.body, c.err = io.ReadAll(resp.Body)
		return c
	}
}

// ledgerRow is a request's row in the ledger, found by Idempotency-Key.
type ledgerRow struct {
	id, status, code, seatID string
}

func ledgerByKey(ctx context.Context, db *storage.DB, c apiCall) (ledgerRow, error) {
	var row ledgerRow
	err := db.Pool.QueryRow(ctx, `SELECT id::text, status, coalesce(code, ''), coalesce(result->'seat'->>'id', '')
		FROM requests WHERE caller = $1 AND idempotency_key = $2`, c.tenant.customerID, c.key).
		Scan(&row.id, &row.status, &row.code, &row.seatID)
	return row, err
}

// TestSIGTERMDrains sends SIGTERM to `seatd serve` while clients are
// submitting requests. The process must stop taking requests, answer the
// ones in flight, and exit 0; every request that got 200 or 202 is then
// applied exactly once (a fresh worker finishes those still queued).
func TestSIGTERMDrains(t *testing.T) {
	r := newRig(t, storagetest.NewDatabase(t))
	tenants := provision(t, r.db, 2, 40)
	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	serve := r.start("serve", "serve", "SEATD_HTTP_ADDR=127.0.0.1:"+port, "SEATD_SYNC_TIMEOUT=3s", "SEATD_RATE_LIMIT=0")
	waitHTTP(t, serve, base)

	begin := time.Now()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var (
		mu       sync.Mutex
		calls    []apiCall
		answered atomic.Int64
		wg       sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ten := tenants[g%len(tenants)]
			// Until the server is gone: a client that gets no answer stops.
			for i := 0; ; i++ {
				c := postAssign(client, base, ten, fmt.Sprintf("client-%d-%d@example.com", g, i), i%3 == 2)
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				if c.err != nil {
					return
				}
				answered.Add(1)
			}
		}()
	}
	waitFor(t, 20*time.Second, "clients getting answers", func() (bool, string) {
		return answered.Load() >= 60, fmt.Sprintf("%d answers", answered.Load())
	})
	finishSlow := slowPost(t, "127.0.0.1:"+port, tenants[0], "slow@example.com")
	time.Sleep(100 * time.Millisecond) // deliberate: the server has the slow request in hand
	serve.Signal(syscall.SIGTERM)
	signalled := time.Now()
	time.Sleep(300 * time.Millisecond) // deliberate: the rest of the body arrives while draining
	slow := finishSlow()
	code := serve.Wait(30 * time.Second)
	drain := time.Since(signalled)
	wg.Wait()
	calls = append(calls, slow) // its answer is checked with the others'.
	if code != 0 {
		t.Errorf("seatd serve exited %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(serve.Output(), "seatd stopped cleanly") {
		t.Errorf("no \"seatd stopped cleanly\" in the output")
	}

	// What the clients saw.
	var accepted, refusedAtDoor, cut []apiCall
	answers := map[int]int{}
	for _, c := range calls {
		switch {
		case c.err != nil && isRefused(c.err):
			refusedAtDoor = append(refusedAtDoor, c) // the server was gone: nothing sent
		case c.err != nil:
			cut = append(cut, c)
		default:
			answers[c.status]++
			// 503 is "could not be queued": not accepted. Every other
			// answer comes from the worker (200, 400) or promises it (202).
			if c.status != http.StatusServiceUnavailable {
				accepted = append(accepted, c)
			}
		}
	}
	for _, c := range cut {
		t.Errorf("a request in flight at SIGTERM lost its answer: %v", c.err)
	}

	// A fresh worker finishes what the drained one left in the stream.
	r.start("worker-after", "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows := make([]ledgerRow, len(accepted))
	waitFor(t, 30*time.Second, "every accepted request to have an outcome", func() (bool, string) {
		for i, c := range accepted {
			if rows[i].status != "" && rows[i].status != "queued" {
				continue
			}
			row, err := ledgerByKey(ctx, r.db, c)
			if err != nil || row.status == "queued" {
				return false, fmt.Sprintf("request %d of %d: %+v %v", i, len(accepted), row, err)
			}
			rows[i] = row
		}
		return true, ""
	})
	reqIDs := make([]string, len(accepted))
	for i, c := range accepted {
		row := rows[i]
		reqIDs[i] = row.id
		switch c.status {
		case http.StatusOK:
			var seat struct{ ID string }
			if err := json.Unmarshal(c.body, &seat); err != nil || seat.ID == "" || seat.ID != row.seatID {
				t.Errorf("200 with seat %q, but the ledger says %+v", seat.ID, row)
			}
		case http.StatusAccepted:
			var q struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(c.body, &q); err != nil || q.RequestID != row.id {
				t.Errorf("202 for request %q, but the ledger has %+v", q.RequestID, row)
			}
		default:
			var e struct{ Error string }
			if err := json.Unmarshal(c.body, &e); err != nil || e.Error != ingress.ErrorName(events.Code(row.code)) {
				t.Errorf("%d %s, but the ledger says %+v", c.status, c.body, row)
			}
		}
	}
	o := checkOutcome(t, r.db, reqIDs)
	var queuedLeft int
	_ = r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE status = 'queued'`).Scan(&queuedLeft)
	t.Logf("SUMMARY SIGTERM drain: %s answers=%v in-flight-cut=%d refused-after-close=%d drain=%s exit=%d (ledger rows still queued: %d) wall=%s",
		o, answers, len(cut), len(refusedAtDoor), drain.Round(10*time.Millisecond), code, queuedLeft,
		time.Since(begin).Round(100*time.Millisecond))
}

// TestSecondSIGTERMExitsAtOnce: while seatd drains work it cannot finish
// (the worker waits on a row lock the test holds), a second SIGTERM ends
// it at once. The request it held is redelivered and applied once.
func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	r := newRig(t, storagetest.NewDatabase(t))
	ten := provision(t, r.db, 1, 5)[0]
	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	serve := r.start("serve", "serve", "SEATD_HTTP_ADDR=127.0.0.1:"+port, "SEATD_RATE_LIMIT=0")
	waitHTTP(t, serve, base)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := r.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // for a failure before the checked rollback below
	if _, err := tx.Exec(ctx, `SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE`, ten.subID); err != nil {
		t.Fatal(err)
	}
	c := postAssign(http.DefaultClient, base, ten, "held@example.com", true)
	if c.err != nil || c.status != http.StatusAccepted {
		t.Fatalf("async assign: %d %s %v", c.status, c.body, c.err)
	}
	waitFor(t, 10*time.Second, "the worker to wait on the pool's row lock", func() (bool, string) {
		var waiting int
		err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE NOT l.granted AND a.datname = current_database()`).Scan(&waiting)
		return err == nil && waiting > 0, fmt.Sprintf("%d waiting, err %v", waiting, err)
	})

	serve.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond) // deliberate: let the drain begin
	if !serve.Running() {
		t.Fatalf("seatd exited on the first SIGTERM with work in hand that cannot finish:\n%s", serve.out.Tail(2000))
	}
	serve.Signal(syscall.SIGTERM)
	second := time.Now()
	code := serve.Wait(5 * time.Second)
	took := time.Since(second)
	if took > 2*time.Second {
		t.Errorf("exit took %s after the second SIGTERM", took)
	}
	if code == 0 {
		t.Errorf("exit code 0 after an interrupted drain; want non-zero")
	}
	if !strings.Contains(serve.Output(), "second signal") {
		t.Errorf("no \"second signal\" in the output")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	r.start("worker-after", "worker")
	var row ledgerRow
	waitFor(t, 30*time.Second, "the held request to be applied", func() (bool, string) {
		row, err = ledgerByKey(ctx, r.db, c)
		return err == nil && row.status != "queued", fmt.Sprintf("%+v %v", row, err)
	})
	o := checkOutcome(t, r.db, []string{row.id})
	if o.applied != 1 {
		t.Errorf("held request: %+v, want succeeded", row)
	}
	t.Logf("SUMMARY second SIGTERM: exit=%d %s after the second signal; held request %s once a new worker ran (%s)",
		code, took.Round(time.Millisecond), row.status, o)
}

// TestServeMinimalConfig starts `seatd serve` with only a data dir, an
// HTTP address, a database and an SMTP URL with a password: it starts an
// embedded NATS server and makes a secret key, prints its configuration
// without the secrets, answers /healthz and /readyz, and exits 0 on
// SIGTERM.
func TestServeMinimalConfig(t *testing.T) {
	seatdBinary(t)
	dbURL := storagetest.NewDatabase(t)
	dataDir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	const smtpPassword = "secretpw"
	begin := time.Now()
	serve := startProc(t, "serve", childEnv(
		"SEATD_DATA_DIR="+dataDir,
		"SEATD_HTTP_ADDR=127.0.0.1:"+port,
		"DATABASE_URL="+dbURL,
		"SMTP_URL=smtp://u:"+smtpPassword+"@127.0.0.1:1",
	), "serve")
	waitHTTP(t, serve, base)
	started := time.Since(begin)
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // the status is all we wanted
	if resp.StatusCode != 200 {
		t.Errorf("/readyz: %s", resp.Status)
	}
	serve.Signal(syscall.SIGTERM)
	code := serve.Wait(20 * time.Second)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}

	out := serve.Output()
	if !strings.Contains(out, "seatd configuration:") {
		t.Errorf("the configuration was not printed")
	}
	if !strings.Contains(out, "smtp://u:*****@127.0.0.1:1") {
		t.Errorf("SMTP_URL not printed masked")
	}
	secrets := []string{smtpPassword}
	key, err := os.ReadFile(filepath.Join(dataDir, "secret.key"))
	if err != nil {
		t.Errorf("no secret key made in the data dir: %v", err)
	} else {
		secrets = append(secrets, strings.TrimSpace(string(key)))
	}
	if u, err := url.Parse(dbURL); err == nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("a secret (%.3s…) appears in the output", s)
		}
	}
	if !strings.Contains(out, "embedded NATS JetStream server started") {
		t.Errorf("no embedded NATS server was started")
	}
	t.Logf("SUMMARY serve with minimal config: healthy after %s, secrets in output=0, exit=%d on SIGTERM",
		started.Round(10*time.Millisecond), code)
}

// TestConfigPrintMasksSecrets gives every secret setting a secret and
// checks that none of them is in what seatd prints. `seatd migrate` prints
// the configuration like every role, then needs the database only.
func TestConfigPrintMasksSecrets(t *testing.T) {
	seatdBinary(t)
	dbURL := storagetest.NewDatabase(t)
	secrets := map[string]string{
		"SEATD_SECRET_KEY": testSecretKey,
		"SMTP_URL":         "smtppassw0rd",
		"NATS_URL":         "natst0ken", // token authentication: the token is the URL's user
	}
	env := childEnv(
		"SEATD_DATA_DIR="+t.TempDir(),
		"SEATD_SECRET_KEY="+testSecretKey,
		"SMTP_URL=smtps://mailer:smtppassw0rd@127.0.0.1:1",
		"NATS_URL=nats://natst0ken@127.0.0.1:1",
	)
	// The test server trusts local connections, so a password in the URL
	// is accepted and ignored; a URL that has one already keeps it.
	if u, err := url.Parse(dbURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secrets["DATABASE_URL"] = pw
		} else if u.Scheme != "" {
			u.User = url.UserPassword(u.User.Username(), "dbpassw0rd")
			dbURL = u.String()
			secrets["DATABASE_URL"] = "dbpassw0rd"
		}
	}
	p := startProc(t, "migrate", append(env, "DATABASE_URL="+dbURL), "migrate")
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("seatd migrate exited %d", code)
	}
	out := p.Output()
	if !strings.Contains(out, "seatd configuration:") {
		t.Fatalf("the configuration was not printed")
	}
	leaked := 0
	for setting, secret := range secrets {
		if strings.Contains(out, secret) {
			leaked++
			t.Errorf("the secret of %s is printed in clear", setting)
		}
	}
	t.Logf("SUMMARY config print: secret settings=%d leaked=%d", len(secrets), leaked)
}

// TestMigrateConcurrently runs `seatd migrate` from four processes at once
// on an empty database: all succeed and each migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	seatdBinary(t)
	dbURL := storagetest.NewEmptyDatabase(t)
	files, err := filepath.Glob("../../storage/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	begin := time.Now()
	procs := make([]*proc, 4)
	for i := range procs {
		procs[i] = startProc(t, fmt.Sprintf("migrate-%d", i+1),
			childEnv("DATABASE_URL="+dbURL, "SEATD_DATA_DIR="+t.TempDir()), "migrate")
	}
	for _, p := range procs {
		if code := p.Wait(60 * time.Second); code != 0 {
			t.Errorf("%s exited %d", p.name, code)
		}
	}
	wall := time.Since(begin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, versions int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows != len(files) || versions != len(files) {
		t.Errorf("schema_migrations has %d rows (%d versions), want one per migration (%d)", rows, versions, len(files))
	}
	if _, err := db.Pool.Exec(ctx, `SELECT 1 FROM requests LIMIT 1`); err != nil {
		t.Errorf("the schema is not there: %v", err)
	}
	t.Logf("SUMMARY concurrent migrate: processes=4 exit-0=%d migrations=%d rows=%d wall=%s",
		countExit0(procs), len(files), rows, wall.Round(10*time.Millisecond))
}

func countExit0(procs []*proc) int {
	n := 0
	for _, p := range procs {
		if !p.Running() && p.cmd.ProcessState.ExitCode() == 0 {
			n++
		}
	}
	return n
}
