package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// tenant is an organization with one customer who bought a pool of seats,
// and a session of that customer.
type tenant struct {
	customerID string
	subID      string
	token      string
}

// provision creates r.pools tenants through storage's provisioning
// methods, as `seatctl org/customer/product/subscription/session create` would.
func (r *run) provision(ctx context.Context) ([]tenant, error) {
	out := make([]tenant, r.pools)
	for i := range out {
		org, err := r.db.CreateOrganization(ctx, fmt.Sprintf("Bench org %d", i), true, false)
		if err != nil {
			return nil, err
		}
		cust, err := r.db.CreateCustomer(ctx, org, fmt.Sprintf("buyer-%d@bench.example", i), "")
		if err != nil {
			return nil, err
		}
		prod, err := r.db.CreateProduct(ctx, storage.ProductSpec{OrganizationID: org, Name: "Bench plan", RecurringInterval: "month"})
		if err != nil {
			return nil, err
		}
		sub, err := r.db.CreatePool(ctx, storage.PoolSpec{Kind: "subscription", CustomerID: cust, ProductID: prod.ID, Seats: r.seats})
		if err != nil {
			return nil, err
		}
		tok, _, err := r.db.CreateSession(ctx, cust, "", nil, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		out[i] = tenant{customerID: cust, subID: sub, token: tok}
	}
	if r.expect.Demand == nil {
		r.expect.Demand = map[string]int{}
	}
	for _, t := range out {
		r.expect.Demand[t.subID] += 0
	}
	return out, nil
}

// assign is one request of the load.
type assign struct {
	tenant         tenant
	email          string
	immediateClaim bool
}

// load returns n assigns spread round-robin over the tenants, each to a
// distinct email, numbered from first (so a second load does not repeat
// the first one's recipients); every 1/ClaimRatio-th claims at once. It
// records the demand for Verify.
func (r *run) load(tenants []tenant, first, n int) []assign {
	out := make([]assign, n)
	for i := range out {
		k := first + i
		t := tenants[k%len(tenants)]
		out[i] = assign{tenant: t, email: fmt.Sprintf("user-%d@bench.example", k),
			immediateClaim: math.Floor(float64(k+1)*r.o.ClaimRatio) > math.Floor(float64(k)*r.o.ClaimRatio)}
		r.expect.Demand[t.subID]++
	}
	r.expect.Requests += n
	return out
}

// request is the message the ingress would publish for a.
func (a assign) request() events.Request {
	return events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: a.tenant.customerID,
		Assign:      &events.SeatAssign{SubscriptionID: a.tenant.subID, Email: a.email, ImmediateClaim: a.immediateClaim},
		SubmittedAt: time.Now().UTC()}
}

// body is its HTTP body.
func (a assign) body() map[string]any {
	b := map[string]any{"subscription_id": a.tenant.subID, "email": a.email}
	if a.immediateClaim {
		b["immediate_claim"] = true
	}
	return b
}

// connectNATS connects to the embedded server of this mode's seatd child
// (it records its URL in the data dir), waiting for it to start.
func (r *run) connectNATS(ctx context.Context) (*config.NATS, error) {
	cfg := config.Defaults()
	cfg.DataDir = r.dataDir
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := r.childrenAlive(); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(r.dataDir, "nats.url")); err == nil {
			n, err := cfg.ConnectNATS(ctx, "seatctl-bench", false, r.log)
			if err == nil {
				return n, nil
			}
			if time.Now().After(deadline) {
				return nil, err
			}
		} else if time.Now().After(deadline) {
			return nil, errors.New("seatd did not start its NATS server within 90 s")
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// waitConsumer waits until a consumer has a pull request waiting: its
// process is up and asking for work.
func (r *run) waitConsumer(ctx context.Context, js jetstream.JetStream, stream, consumer string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := r.childrenAlive(); err != nil {
			return err
		}
		if c, err := js.Consumer(ctx, stream, consumer); err == nil {
			if info, err := c.Info(ctx); err == nil && info.NumWaiting > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consumer %s did not start pulling within 90 s", consumer)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitHTTP waits until seatd's ingress at addr answers /readyz.
func (r *run) waitHTTP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := r.childrenAlive(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("seatd at %s not ready within 90 s", addr)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r *run) childrenAlive() error {
	for _, c := range r.children {
		if err := c.exited(); err != nil {
			return err
		}
		c.sample()
	}
	return nil
}

// waitApplied waits until every request of the ledger has an outcome and
// there are want of them, and returns when the last one completed. It
// fails when nothing moves for two minutes.
func (r *run) waitApplied(ctx context.Context, want int) (time.Time, error) {
	last, lastChange, lastReport := -1, time.Now(), time.Now()
	for {
		if err := r.childrenAlive(); err != nil {
			return time.Time{}, err
		}
		var total, done int
		var end *time.Time
		if err := r.db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status <> 'queued'), max(completed_at)
			FROM requests`).Scan(&total, &done, &end); err != nil {
			return time.Time{}, err
		}
		if done >= want && total == done {
			return *end, nil
		}
		if done != last {
			last, lastChange = done, time.Now()
		} else if time.Since(lastChange) > 2*time.Minute {
			return time.Time{}, fmt.Errorf("stalled: %d of %d requests have an outcome, none more for 2 minutes", done, want)
		}
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			_, _ = fmt.Fprintf(r.o.Stderr, "bench %s: %d of %d requests have an outcome\n", r.mode, done, want)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return time.Time{}, fmt.Errorf("waiting for outcomes (%d of %d): %w", done, want, err)
		}
	}
}

// ledgerLatency is the submit → outcome time of the ledger's requests, in
// milliseconds: created_at is the request's submission (the ingress's
// clock, or SubmittedAt for requests published straight to the queue),
// completed_at the worker's commit.
func (r *run) ledgerLatency(ctx context.Context) (p50, p99 float64, err error) {
	err = r.db.Pool.QueryRow(ctx, `SELECT
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)), 0) * 1000,
			coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)), 0) * 1000
		FROM requests WHERE completed_at IS NOT NULL`).Scan(&p50, &p99)
	return round(p50), round(p99), err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
