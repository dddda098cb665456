package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage"
)

// direct is the design the queue replaces: clients goroutines, each
// request one transaction straight through storage (the worker's own
// code path, storage.Apply, one request per transaction: ledger row, pool
// lock, capacity check, seat, counter, outbox), no queue, in this process.
func (r *run) direct(ctx context.Context, res *Result) error {
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	load := r.load(tenants, 0, r.n)
	st := storage.Settings{Keys: r.keys, InvitationTTL: 24 * time.Hour}
	lat := make([]time.Duration, len(load))
	var next atomic.Int64
	var errOnce sync.Once
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < r.o.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(load) || ctx.Err() != nil {
					return
				}
				req := load[i].request()
				t0 := time.Now()
				for attempt := 0; ; attempt++ {
					_, err := r.db.Apply(ctx, st, []events.Request{req})
					if err == nil {
						break
					}
					if storage.IsTransient(err) && attempt < 50 && ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(len(load)))
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res.Clients = r.o.Clients
	res.Seconds, res.PerS = el.Seconds(), float64(len(load))/el.Seconds()
	res.P50ms, res.P99ms = percentiles(lat)
	res.SeatdPeakRSSMB, res.SeatdRSSOf = selfPeakRSSMB(), "seatctl bench (direct runs in-process)"
	return nil
}

// queue publishes the load to JetStream, as fast as it acknowledges, while
// a `seatd worker` applies it; the time is from the first publish until
// the last request was applied. hot is the same with one pool.
func (r *run) queue(ctx context.Context, res *Result) error {
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	load := r.load(tenants, 0, r.n)
	w, err := r.startSeatd("seatd-worker", "worker")
	if err != nil {
		return err
	}
	nc, err := r.connectNATS(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := r.waitConsumer(ctx, nc.JS, events.RequestsStream, events.WorkerConsumer); err != nil {
		return err
	}
	start := time.Now()
	if err := r.publish(ctx, nc.JS, load); err != nil {
		return err
	}
	published := time.Since(start)
	end, err := r.waitApplied(ctx, r.expect.Requests)
	if err != nil {
		return err
	}
	el := end.Sub(start)
	res.Seconds, res.PerS = el.Seconds(), float64(len(load))/el.Seconds()
	res.PublishedPerS = round(float64(len(load)) / published.Seconds())
	if res.P50ms, res.P99ms, err = r.ledgerLatency(ctx); err != nil {
		return err
	}
	w.sample()
	res.SeatdPeakRSSMB, res.SeatdRSSOf = round(w.PeakRSSMB()), "seatd worker"
	return nil
}

// publish sends the load to the requests stream, pipelined, in chunks
// stamped with their submission time, as the ingress would publish them.
func (r *run) publish(ctx context.Context, js jetstream.JetStream, load []assign) error {
	const chunk = 1000
	for i := 0; i < len(load); i += chunk {
		part := load[i:min(i+chunk, len(load))]
		reqs := make([]events.Request, len(part))
		for j, a := range part {
			reqs[j] = a.request()
		}
		msgs := make([]stream.Msg, len(reqs))
		for j, req := range reqs {
			m, err := stream.RequestMsg(req)
			if err != nil {
				return err
			}
			msgs[j] = m
		}
		if err := stream.PublishAll(ctx, js, msgs, nil); err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
	}
	return nil
}

// serve starts `seatd serve` on a free port and waits until it is ready.
func (r *run) serve(ctx context.Context) (*child, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	c, err := r.startSeatd("seatd-serve", "serve", "SEATD_HTTP_ADDR="+addr, "SEATD_PUBLIC_URL=http://"+addr)
	if err != nil {
		return nil, "", err
	}
	return c, addr, r.waitHTTP(ctx, addr)
}

// drive sends every assign of load as POST /v1/customer-portal/seats from
// r.o.Clients concurrent clients, each request with its pool's session,
// and returns each call's latency. check judges each answer; the first
// error stops the clients.
func (r *run) drive(ctx context.Context, addr string, load []assign, async bool,
	check func(status int, body []byte) error) ([]time.Duration, time.Duration, error) {
	tr := &http.Transport{MaxIdleConns: r.o.Clients, MaxIdleConnsPerHost: r.o.Clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	url := "http://" + addr + "/v1/customer-portal/seats"
	lat := make([]time.Duration, len(load))
	var next atomic.Int64
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		next.Store(int64(len(load)))
	}
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < r.o.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(load) || ctx.Err() != nil {
					return
				}
				body, _ := json.Marshal(load[i].body())
				req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
				if err != nil {
					fail(err)
					return
				}
				req.Header.Set("Authorization", "Bearer "+load[i].tenant.token)
				req.Header.Set("Content-Type", "application/json")
				if async {
					req.Header.Set("Prefer", "respond-async")
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					fail(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close() // fully read; nothing left to lose
				lat[i] = time.Since(t0)
				if err == nil {
					err = check(resp.StatusCode, b)
				}
				if err != nil {
					fail(fmt.Errorf("request %d: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return lat, el, firstErr
}

// httpAsync: clients POST with Prefer: respond-async to `seatd serve`;
// per_s and the latencies are the accepts (202), applied_* the time until
// the worker had applied every accepted request.
func (r *run) httpAsync(ctx context.Context, res *Result) error {
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	load := r.load(tenants, 0, r.n)
	srv, addr, err := r.serve(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	lat, el, err := r.drive(ctx, addr, load, true, func(status int, body []byte) error {
		if status != http.StatusAccepted {
			return fmt.Errorf("answer %d, want 202: %s", status, clip(body))
		}
		return nil
	})
	if err != nil {
		return err
	}
	end, err := r.waitApplied(ctx, r.expect.Requests)
	if err != nil {
		return err
	}
	applied := end.Sub(start)
	res.Clients = r.o.Clients
	res.Seconds, res.PerS = el.Seconds(), float64(len(load))/el.Seconds()
	res.P50ms, res.P99ms = percentiles(lat)
	res.AppliedSeconds, res.AppliedPerS = round(applied.Seconds()), round(float64(len(load))/applied.Seconds())
	if res.AppliedP50ms, res.AppliedP99ms, err = r.ledgerLatency(ctx); err != nil {
		return err
	}
	srv.sample()
	res.SeatdPeakRSSMB, res.SeatdRSSOf = round(srv.PeakRSSMB()), "seatd serve"
	return nil
}

// httpSync: clients POST and wait for the worker's answer (200, or 400
// when the pool is full); a 202 after SEATD_SYNC_TIMEOUT is counted and
// waited for.
func (r *run) httpSync(ctx context.Context, res *Result) error {
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	load := r.load(tenants, 0, r.n)
	srv, addr, err := r.serve(ctx)
	if err != nil {
		return err
	}
	var timedOut atomic.Int64
	lat, el, err := r.drive(ctx, addr, load, false, func(status int, body []byte) error {
		switch {
		case status == http.StatusOK:
		case status == http.StatusAccepted:
			timedOut.Add(1)
		case status == http.StatusBadRequest && bytes.Contains(body, []byte(events.CodeNoAvailableSeats)):
		default:
			return fmt.Errorf("answer %d: %s", status, clip(body))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := r.waitApplied(ctx, r.expect.Requests); err != nil {
		return err
	}
	res.Clients = r.o.Clients
	res.TimedOut = int(timedOut.Load())
	res.Seconds, res.PerS = el.Seconds(), float64(len(load))/el.Seconds()
	res.P50ms, res.P99ms = percentiles(lat)
	srv.sample()
	res.SeatdPeakRSSMB, res.SeatdRSSOf = round(srv.PeakRSSMB()), "seatd serve"
	return nil
}

// importFile generates an n-row CSV for one pool and runs `seatctl
// import` on it as a process of its own against a running `seatd worker`.
func (r *run) importFile(ctx context.Context, res *Result) error {
	if r.o.Seatctl == "" {
		return errors.New("import mode needs the seatctl binary")
	}
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	load := r.load(tenants, 0, r.n)
	path := filepath.Join(r.dataDir, "import.csv")
	var b bytes.Buffer
	b.WriteString("email,immediate_claim\n")
	for _, a := range load {
		fmt.Fprintf(&b, "%s,%t\n", a.email, a.immediateClaim)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return err
	}
	w, err := r.startSeatd("seatd-worker", "worker")
	if err != nil {
		return err
	}
	nc, err := r.connectNATS(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := r.waitConsumer(ctx, nc.JS, events.RequestsStream, events.WorkerConsumer); err != nil {
		return err
	}

	logPath := filepath.Join(r.dataDir, "seatctl-import.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	// Only a diagnostic copy of seatctl's output (tail reads it on
	// failure); os.File writes are unbuffered, so Close loses nothing.
	defer func() { _ = logf.Close() }()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, r.o.Seatctl, "import", "--subscription", tenants[0].subID,
		"--timeout", r.o.Timeout.String(), path)
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(logf, r.o.Stderr) // its progress lines
	// At the mode's timeout seatctl is interrupted, as by Ctrl-C: it
	// stops and prints its summary.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	err = cmd.Run()
	el := time.Since(start)
	if ctx.Err() != nil {
		return fmt.Errorf("seatctl import did not finish within %s (--timeout): %v; its summary: %s",
			r.o.Timeout, err, strings.TrimSpace(out.String()))
	}
	var ee *exec.ExitError
	refusals := r.n > r.seats // some rows must fail: exit 1
	expectedExit := errors.As(err, &ee) && ee.ExitCode() == 1 && refusals
	if err != nil && !expectedExit {
		return fmt.Errorf("seatctl import: %v; output:\n%s%s", err, out.String(), tail(logPath, 3000))
	}
	var sum struct {
		Rows      int `json:"rows"`
		Succeeded int `json:"succeeded"`
		Queued    int `json:"queued"`
	}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		return fmt.Errorf("seatctl import summary %q: %v", out.String(), err)
	}
	if sum.Rows != r.n || sum.Queued != 0 {
		return fmt.Errorf("seatctl import reported %d rows (%d still queued), want %d with none queued", sum.Rows, sum.Queued, r.n)
	}
	if _, err := r.waitApplied(ctx, r.expect.Requests); err != nil {
		return err
	}
	res.Seconds, res.PerS = el.Seconds(), float64(r.n)/el.Seconds()
	if res.P50ms, res.P99ms, err = r.ledgerLatency(ctx); err != nil {
		return err
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.SeatctlPeakRSSMB = round(float64(ru.Maxrss) / 1024)
	}
	w.sample()
	res.SeatdPeakRSSMB, res.SeatdRSSOf = round(w.PeakRSSMB()), "seatd worker"
	return nil
}

// mail measures the mailer alone: a `seatd worker` turns a load of assigns
// into pending seats whose invitations wait in the mail stream, then a
// `seatd mailer` delivers them, first to the mail drop, then (a second
// load) to an SMTP server in this process. Each rate runs from the first
// invitation sent to the last; p50 and p99 are when half and 99% of each
// backlog had gone.
func (r *run) mail(ctx context.Context, res *Result) error {
	tenants, err := r.provision(ctx)
	if err != nil {
		return err
	}
	if _, err := r.startSeatd("seatd-worker", "worker"); err != nil {
		return err
	}
	nc, err := r.connectNATS(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := r.waitConsumer(ctx, nc.JS, events.RequestsStream, events.WorkerConsumer); err != nil {
		return err
	}

	// backlog applies a load and waits until every invitation it created
	// is in the mail stream; it returns those invitations.
	backlog := func(first int) ([]string, map[string]bool, error) {
		load := r.load(tenants, first, r.n)
		if err := r.publish(ctx, nc.JS, load); err != nil {
			return nil, nil, err
		}
		if _, err := r.waitApplied(ctx, r.expect.Requests); err != nil {
			return nil, nil, err
		}
		var ids []string
		rows, err := r.db.Pool.Query(ctx, `SELECT id::text FROM invitations WHERE delivery_state = 'queued'`)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, nil, err
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		emails := map[string]bool{}
		for _, a := range load {
			if !a.immediateClaim {
				emails[a.email] = true
			}
		}
		if len(ids) != len(emails) {
			return nil, nil, fmt.Errorf("%d invitations queued for %d pending seats", len(ids), len(emails))
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var outbox int
			if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox); err != nil {
				return nil, nil, err
			}
			s, err := nc.JS.Stream(ctx, events.MailStream)
			if err != nil {
				return nil, nil, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return nil, nil, err
			}
			if outbox == 0 && int(info.State.Msgs) >= len(ids) {
				return ids, emails, nil
			}
			if time.Now().After(deadline) {
				return nil, nil, fmt.Errorf("relay: %d outbox rows left, %d of %d mail requests in the stream", outbox, info.State.Msgs, len(ids))
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
	}
	// deliver starts a mailer and waits until it has sent every one of
	// ids; it returns the first-to-last time and the drain times.
	var peak float64
	deliver := func(name string, ids []string, extra ...string) (time.Duration, []time.Duration, error) {
		m, err := r.startSeatd("seatd-mailer-"+name, "mailer", extra...)
		if err != nil {
			return 0, nil, err
		}
		defer func() {
			m.stop(30 * time.Second)
			peak = max(peak, m.PeakRSSMB())
		}()
		last, lastChange := -1, time.Now()
		for {
			if err := r.childrenAlive(); err != nil {
				return 0, nil, err
			}
			var sent, failed int
			if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE delivery_state = 'sent'),
					count(*) FILTER (WHERE delivery_state = 'failed') FROM invitations WHERE id = ANY($1::uuid[])`, ids).
				Scan(&sent, &failed); err != nil {
				return 0, nil, err
			}
			if failed > 0 {
				return 0, nil, fmt.Errorf("%d invitations failed to send; mailer output:\n%s", failed, tail(m.logPath, 3000))
			}
			if sent == len(ids) {
				break
			}
			if sent != last {
				last, lastChange = sent, time.Now()
			} else if time.Since(lastChange) > 2*time.Minute {
				return 0, nil, fmt.Errorf("mailer stalled at %d of %d sent", sent, len(ids))
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return 0, nil, err
			}
		}
		m.sample()
		var times []time.Time
		rows, err := r.db.Pool.Query(ctx, `SELECT sent_at FROM invitations WHERE id = ANY($1::uuid[]) ORDER BY sent_at`, ids)
		if err != nil {
			return 0, nil, err
		}
		for rows.Next() {
			var t time.Time
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return 0, nil, err
			}
			times = append(times, t)
		}
		if err := rows.Err(); err != nil {
			return 0, nil, err
		}
		if len(times) == 0 {
			return 0, nil, nil
		}
		drain := make([]time.Duration, len(times))
		for i, t := range times {
			drain[i] = t.Sub(times[0])
		}
		return max(times[len(times)-1].Sub(times[0]), time.Millisecond), drain, nil
	}

	dropIDs, _, err := backlog(0)
	if err != nil {
		return err
	}
	dropEl, dropDrain, err := deliver("drop", dropIDs)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(r.dataDir, "mail", "*.eml"))
	if err != nil {
		return err
	}
	if len(files) != len(dropIDs) {
		return fmt.Errorf("mail drop: %d .eml files for %d invitations", len(files), len(dropIDs))
	}

	sink, err := mailtest.New(mailtest.Config{})
	if err != nil {
		return err
	}
	defer sink.Close()
	smtpIDs, emails, err := backlog(r.n)
	if err != nil {
		return err
	}
	smtpEl, smtpDrain, err := deliver("smtp", smtpIDs, "SMTP_URL="+sink.URL()+"?tls=none")
	if err != nil {
		return err
	}
	msgs := sink.Messages()
	ids, to := map[string]bool{}, map[string]bool{}
	for _, m := range msgs {
		ids[m.MessageID()] = true
		for _, rcpt := range m.To {
			if !emails[strings.ToLower(rcpt)] {
				return fmt.Errorf("SMTP sink got a message for %q, who was not invited", rcpt)
			}
			to[strings.ToLower(rcpt)] = true
		}
	}
	if len(msgs) != len(smtpIDs) || len(ids) != len(smtpIDs) || len(to) != len(smtpIDs) {
		return fmt.Errorf("SMTP sink: %d messages (%d Message-IDs, %d recipients) for %d invitations",
			len(msgs), len(ids), len(to), len(smtpIDs))
	}

	total := len(dropIDs) + len(smtpIDs)
	el := dropEl + smtpEl
	res.Requests = r.expect.Requests
	res.Seconds, res.PerS = el.Seconds(), float64(total)/el.Seconds()
	res.MailPerS = round(res.PerS)
	res.DropPerS = round(float64(len(dropIDs)) / dropEl.Seconds())
	res.SMTPPerS = round(float64(len(smtpIDs)) / smtpEl.Seconds())
	drain := append(dropDrain, smtpDrain...)
	sort.Slice(drain, func(i, j int) bool { return drain[i] < drain[j] })
	res.P50ms, res.P99ms = percentiles(drain)
	res.SeatdPeakRSSMB, res.SeatdRSSOf = round(peak), "seatd mailer"
	return nil
}

func clip(b []byte) string {
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return string(b)
}
