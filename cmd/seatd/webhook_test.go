package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
	"github.com/seatd/seatd/webhook"
)

// TestServeSendsWebhooks drives the built binary end to end: an assign and
// a revoke over HTTP reach a receiver as customer_seat.assigned then
// customer_seat.revoked webhooks, signed with the endpoint's secret, the
// first one after the receiver failed it once. Once with seatd serve, once
// with the ingress, worker and webhooks roles as processes of their own.
func TestServeSendsWebhooks(t *testing.T) {
	seatdBinary(t)
	for _, roles := range [][]string{{"serve"}, {"ingress", "worker", "webhooks"}} {
		t.Run(strings.Join(roles, "+"), func(t *testing.T) { testSendsWebhooks(t, roles) })
	}
}

func testSendsWebhooks(t *testing.T, roles []string) {
	ctx := context.Background()
	dbURL := storagetest.NewDatabase(t)
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ten := provision(t, db, 1, 3)[0]
	var org string
	if err := db.Pool.QueryRow(ctx, `SELECT organization_id FROM customers WHERE id = $1`, ten.customerID).Scan(&org); err != nil {
		t.Fatal(err)
	}
	secretKey := []byte("serve-webhook-test-secret-key-0123456789")
	keys, _ := secret.NewKeys(secretKey)
	sealer, err := webhook.NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}

	type got struct {
		status                   int
		id, ts, sig, typ, seatID string
		body                     []byte
	}
	var mu sync.Mutex
	var hits []got
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		defer mu.Unlock()
		status := 200
		if len(hits) == 0 {
			status = 500
		}
		hits = append(hits, got{status, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			r.Header.Get("webhook-signature"), p.Type, p.Data.ID, body})
		w.WriteHeader(status)
	}))
	defer recv.Close()
	admin := &webhook.Admin{DB: db, Sealer: sealer}
	ep, secret, err := admin.Create(ctx, org, recv.URL+"/hooks", []string{"customer_seat.assigned", "customer_seat.revoked"})
	if err != nil {
		t.Fatal(err)
	}

	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	env := childEnv(
		"SEATD_DATA_DIR="+t.TempDir(),
		"SEATD_HTTP_ADDR=127.0.0.1:"+port,
		"DATABASE_URL="+dbURL,
		"SEATD_SECRET_KEY="+hex.EncodeToString(secretKey),
		"SEATD_WEBHOOK_RETRY_BASE=100ms",
	)
	var procs []*proc
	if len(roles) > 1 {
		nats := startNATS(t)
		env = append(env, "NATS_URL="+nats.URL())
	}
	for _, role := range roles {
		procs = append(procs, startProc(t, role, env, role))
	}
	waitHTTP(t, procs[0], base)

	call := postAssign(http.DefaultClient, base, ten, "dev@example.com", false)
	if call.err != nil || call.status != 200 {
		t.Fatalf("assign: %d %v %s", call.status, call.err, call.body)
	}
	var seat struct{ ID string }
	_ = json.Unmarshal(call.body, &seat)
	req, _ := http.NewRequest("DELETE", base+"/v1/customer-portal/seats/"+seat.ID, nil)
	req.Header.Set("Authorization", "Bearer "+ten.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	_ = resp.Body.Close()

	waitFor(t, 30*time.Second, "two webhooks delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		ok := 0
		for _, h := range hits {
			if h.status == 200 {
				ok++
			}
		}
		return ok == 2, fmt.Sprintf("%d requests, %d answered 200", len(hits), ok)
	})
	for _, p := range procs {
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(20 * time.Second); code != 0 {
			t.Errorf("%s: exit %d after SIGTERM", p.name, code)
		}
		if strings.Contains(p.Output(), secret) {
			t.Errorf("the endpoint secret appears in the output of %s", p.name)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		status int
		typ    string
	}{{500, "customer_seat.assigned"}, {200, "customer_seat.assigned"}, {200, "customer_seat.revoked"}}
	if len(hits) != len(want) {
		t.Fatalf("%d requests, want %d", len(hits), len(want))
	}
	for i, h := range hits {
		if h.status != want[i].status || h.typ != want[i].typ || h.seatID != seat.ID {
			t.Errorf("request %d: %d %s for seat %s, want %d %s for %s", i, h.status, h.typ, h.seatID, want[i].status, want[i].typ, seat.ID)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		_, _ = fmt.Fprintf(mac, "%s.%s.%s", h.id, h.ts, h.body)
		if h.sig != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Errorf("request %d: signature %s does not verify", i, h.sig)
		}
	}
	if hits[0].id != hits[1].id || hits[1].id == hits[2].id {
		t.Errorf("webhook-ids %s %s %s: want the retry to repeat the first, the next event to differ", hits[0].id, hits[1].id, hits[2].id)
	}
	ds, err := admin.Deliveries(ctx, ep.ID, "", 10)
	if err != nil || len(ds) != 2 || ds[1].Status != "succeeded" || len(ds[1].AttemptLog) != 2 {
		t.Errorf("delivery log: %+v %v", ds, err)
	}
	t.Logf("SUMMARY %s webhooks: assign+revoke → %d requests, 2 delivered, 1 retry, signatures valid", strings.Join(roles, "+"), len(hits))
}
