package main

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/webhook"
)

// The seatctl webhook commands, against a running pipeline and a real
// receiver: create shows the secret once; a receiver that fails gets its
// endpoint disabled; enable and redeliver bring the webhook through.
func TestWebhookCommands(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("NATS_URL", e.Server.ClientURL())
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	t.Setenv("SEATD_SECRET_KEY", hex.EncodeToString([]byte("seatd-test-secret-key-0123456789abcdef"))) // seatdtest.TestKeys
	ten := e.Tenant(seatdtest.TenantOptions{})

	var failing atomic.Bool
	failing.Store(true)
	var got atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()

	// Bad input: a clear error, nothing created.
	for _, args := range [][]string{
		{"webhook", "create", "--org", ten.OrgID, "--url", "ftp://x.test/"},
		{"webhook", "create", "--org", ten.OrgID, "--url", recv.URL, "--events", "customer_seat.assigned,seat.bogus"},
		{"webhook", "create", "--url", recv.URL},
		{"webhook", "create", "--org", "00000000-0000-0000-0000-000000000000", "--url", recv.URL},
	} {
		if _, stderr, err := ctl(t, args...); err == nil {
			t.Errorf("seatctl %v succeeded", args)
		} else if strings.Contains(stderr, "panic") {
			t.Errorf("seatctl %v: %s", args, stderr)
		}
	}
	if eps := mustCtl(t, "webhook", "list", "--org", ten.OrgID)["endpoints"].([]any); len(eps) != 0 {
		t.Fatalf("refused creates left endpoints: %v", eps)
	}

	created := mustCtl(t, "webhook", "create", "--org", ten.OrgID, "--url", recv.URL+"/seats", "--events", "customer_seat.assigned")
	id, secret := created["id"].(string), created["secret"].(string)
	if !regexp.MustCompile(`^whsec_[A-Za-z0-9]{43}$`).MatchString(secret) || !webhook.ValidSecret(secret) {
		t.Fatalf("secret %q is not in Polar's format", secret)
	}
	listed := mustCtl(t, "webhook", "list", "--org", ten.OrgID)["endpoints"].([]any)
	if len(listed) != 1 || listed[0].(map[string]any)["id"] != id || listed[0].(map[string]any)["secret"] != nil {
		t.Fatalf("list: %v", listed)
	}
	rotated := mustCtl(t, "webhook", "rotate-secret", id)
	if s, _ := rotated["secret"].(string); s == secret || !webhook.ValidSecret(s) {
		t.Fatalf("rotate-secret: %v", rotated)
	}
	var clear int
	_ = e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_endpoints
		WHERE position($1::bytea IN secret_sealed) > 0`, []byte(rotated["secret"].(string)[6:30])).Scan(&clear)
	if clear != 0 {
		t.Fatal("the secret is stored in clear")
	}

	r, err := webhook.New(webhook.Config{DB: e.DB, JS: e.JS, Keys: e.Keys, Log: e.Log,
		RetryBase: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxAttempts: 2, DisableAfter: 1,
		PollInterval: 50 * time.Millisecond, FetchWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("webhook runner: %v", err)
		}
	}()

	res := e.Do("POST", "/v1/customer-portal/seats", ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "dev@example.com"})
	if res.Status != 200 {
		t.Fatalf("assign: %d %s", res.Status, res.Body)
	}
	var delivery map[string]any
	seatdtest.WaitFor(t, 10*time.Second, "the endpoint disabled", func() bool {
		ds := mustCtl(t, "webhook", "deliveries", id)["deliveries"].([]any)
		if len(ds) != 1 {
			return false
		}
		delivery = ds[0].(map[string]any)
		eps := mustCtl(t, "webhook", "list", "--org", ten.OrgID)["endpoints"].([]any)
		return delivery["status"] == "failed" && eps[0].(map[string]any)["enabled"] == false
	})
	if log := delivery["attempt_log"].([]any); len(log) != 2 || log[0].(map[string]any)["status_code"] != 502.0 {
		t.Errorf("attempt log %v", log)
	}
	if _, stderr, err := ctl(t, "webhook", "redeliver", delivery["id"].(string)); err == nil || !strings.Contains(stderr+err.Error(), "disabled") {
		t.Errorf("redeliver to a disabled endpoint: %v %s", err, stderr)
	}

	failing.Store(false)
	if ep := mustCtl(t, "webhook", "enable", id); ep["enabled"] != true {
		t.Fatalf("enable: %v", ep)
	}
	if out := mustCtl(t, "webhook", "redeliver", "--endpoint", id); out["requeued"] != 1.0 {
		t.Fatalf("redeliver --endpoint: %v", out)
	}
	seatdtest.WaitFor(t, 10*time.Second, "the webhook delivered", func() bool {
		ds := mustCtl(t, "webhook", "deliveries", id, "--status", "succeeded")["deliveries"].([]any)
		return len(ds) == 1 && ds[0].(map[string]any)["id"] == delivery["id"]
	})
	if got.Load() != 1 {
		t.Errorf("receiver got %d webhooks, want 1", got.Load())
	}
	if again := mustCtl(t, "webhook", "redeliver", delivery["id"].(string)); again["status"] != "pending" {
		t.Errorf("redeliver: %v", again)
	}
	seatdtest.WaitFor(t, 10*time.Second, "the webhook delivered again", func() bool { return got.Load() == 2 })

	if _, _, err := ctl(t, "webhook", "deliveries", id, "--status", "weird"); err == nil {
		t.Error("deliveries --status weird succeeded")
	}
	mustCtl(t, "webhook", "delete", id)
	if eps := mustCtl(t, "webhook", "list", "--org", ten.OrgID)["endpoints"].([]any); len(eps) != 0 {
		t.Errorf("deleted endpoint listed: %v", eps)
	}
	if _, _, err := ctl(t, "webhook", "enable", id); err == nil {
		t.Error("enable of a deleted endpoint succeeded")
	}
}
