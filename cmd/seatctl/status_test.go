package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
)

// runStatus runs seatctl status with args and returns its stdout and exit
// code (0, or the exitError's).
func runStatus(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"status"}, args...), strings.NewReader(""), &out, &errb)
	var ee exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.code
	default:
		t.Fatalf("seatctl status %v: %v %s", args, err, errb.String())
		return "", 1
	}
}

type statusReport struct {
	Healthy     bool     `json:"healthy"`
	Problems    []string `json:"problems"`
	DeadLetters int      `json:"dead_letters"`
	MailBacklog int      `json:"mail_backlog"`
	Queued      int      `json:"queued_requests"`
	Streams     []struct {
		Name      string `json:"name"`
		Consumers []struct {
			Name        string `json:"name"`
			Pending     int    `json:"pending"`
			AckPending  int    `json:"ack_pending"`
			Redelivered int    `json:"redelivered"`
		} `json:"consumers"`
	} `json:"streams"`
	Invitations map[string]int `json:"invitations"`
	Pools       []struct {
		ID        string `json:"id"`
		Seats     int    `json:"seats"`
		SeatsUsed int    `json:"seats_used"`
	} `json:"fullest_pools"`
}

func statusJSON(t *testing.T, args ...string) (statusReport, int) {
	t.Helper()
	out, code := runStatus(t, append([]string{"--json"}, args...)...)
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json: %v: %q", err, out)
	}
	return r, code
}

// consumerPending is a consumer's pending count in the report, -1 when the
// consumer is missing.
func (r statusReport) consumerPending(stream, consumer string) int {
	for _, s := range r.Streams {
		for _, c := range s.Consumers {
			if s.Name == stream && c.Name == consumer {
				return c.Pending
			}
		}
	}
	return -1
}

func TestStatusAfterTraffic(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{Mail: "drop", MailDir: t.TempDir()})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("NATS_URL", e.Server.ClientURL())
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	full := e.Tenant(seatdtest.TenantOptions{Seats: 2, Product: "Full"})
	roomy := e.Tenant(seatdtest.TenantOptions{Seats: 5, Product: "Roomy"})
	assign := func(ten seatdtest.Tenant, email string, want int) {
		t.Helper()
		r := e.Do("POST", "/v1/customer-portal/seats", ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": email})
		if r.Status != want {
			t.Fatalf("assign %s: %d %s, want %d", email, r.Status, r.Body, want)
		}
	}
	assign(full, "a@example.com", 200)
	assign(full, "b@example.com", 200)
	assign(full, "c@example.com", 400) // no available seats
	assign(roomy, "d@example.com", 200)

	var r statusReport
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var code int
		r, code = statusJSON(t)
		if code == 0 && r.Invitations["sent"] == 3 && r.MailBacklog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three invitations not sent after 30s: exit %d, %+v", code, r)
		}
	}
	if !r.Healthy || len(r.Problems) != 0 || r.DeadLetters != 0 || r.Queued != 0 {
		t.Errorf("after clean traffic: healthy %v, problems %v, dead letters %d, queued %d", r.Healthy, r.Problems, r.DeadLetters, r.Queued)
	}
	if p := r.consumerPending(events.RequestsStream, events.WorkerConsumer); p != 0 {
		t.Errorf("worker consumer pending %d, want 0", p)
	}
	if p := r.consumerPending(events.MailStream, events.MailerConsumer); p != 0 {
		t.Errorf("mailer consumer pending %d, want 0", p)
	}
	if len(r.Pools) != 2 || r.Pools[0].ID != full.SubscriptionID || r.Pools[0].SeatsUsed != 2 || r.Pools[0].Seats != 2 ||
		r.Pools[1].ID != roomy.SubscriptionID || r.Pools[1].SeatsUsed != 1 {
		t.Errorf("fullest pools: %+v", r.Pools)
	}

	table, code := runStatus(t)
	t.Logf("seatctl status:\n%s", table)
	for _, want := range []string{"seatd pipeline: HEALTHY", "SEATD_REQUESTS/seatd-worker", "SEATD_MAIL/seatd-mailer",
		"dead letters:    0", full.SubscriptionID + "  subscription  Full", "100%"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if code != 0 {
		t.Errorf("healthy status exited %d", code)
	}

	// A dead letter makes the pipeline unhealthy until an operator acts.
	if _, err := e.JS.Publish(context.Background(), events.RequestsSubject, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	seatdtest.WaitFor(t, 10*time.Second, "the dead letter to show", func() bool {
		r, code = statusJSON(t)
		return r.DeadLetters == 1
	})
	if code != 2 || r.Healthy || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "dead letter") {
		t.Errorf("with a dead letter: exit %d, healthy %v, problems %v", code, r.Healthy, r.Problems)
	}
	table, code = runStatus(t)
	if code != 2 || !strings.Contains(table, "seatd pipeline: UNHEALTHY") || !strings.Contains(table, "seatctl dlq list") {
		t.Errorf("table with a dead letter (exit %d):\n%s", code, table)
	}
	mustCtl(t, "dlq", "purge")
	if _, code := runStatus(t); code != 0 {
		t.Errorf("after dlq purge: exit %d", code)
	}
}

// With no worker running, an accepted request waits in the queue; once it
// is older than --max-queued-age the pipeline is unhealthy.
func TestStatusQueuedTooLong(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{Workers: -1})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("NATS_URL", e.Server.ClientURL())
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	ten := e.Tenant(seatdtest.TenantOptions{})
	r := e.Do("POST", "/v1/customer-portal/seats", ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "waits@example.com"},
		"Prefer", "respond-async")
	if r.Status != 202 {
		t.Fatalf("async assign: %d %s", r.Status, r.Body)
	}
	rep, code := statusJSON(t) // default: 2 minutes is fine
	if code != 0 || rep.Queued != 1 || rep.consumerPending(events.RequestsStream, events.WorkerConsumer) != 1 {
		t.Errorf("fresh queued request: exit %d, queued %d, worker pending %d", code, rep.Queued,
			rep.consumerPending(events.RequestsStream, events.WorkerConsumer))
	}
	time.Sleep(50 * time.Millisecond)
	rep, code = statusJSON(t, "--max-queued-age", "10ms")
	if code != 2 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "oldest queued request") {
		t.Errorf("old queued request: exit %d, problems %v", code, rep.Problems)
	}
	// Once a worker applies it, the queue is empty again.
	e.StartWorker()
	seatdtest.WaitFor(t, 10*time.Second, "the queue to drain", func() bool {
		rep, code = statusJSON(t, "--max-queued-age", "10ms")
		return code == 0 && rep.Queued == 0
	})
}
