package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
)

// A delivered webhook carries Polar's body and Standard Webhooks headers,
// with a signature keyed by the UTF-8 bytes of the whole secret; only the
// organization's subscribed endpoints get it, and only events that happened
// after they were created.
func TestDeliverySigned(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	old := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	old.Timestamp = time.Now().Add(-time.Hour) // before any endpoint existed
	all, secret := b.endpoint(t, rc.srv.URL+"/all")
	revokedOnly, _ := b.endpoint(t, rc.srv.URL+"/revoked", events.SeatRevokedEvent)
	otherOrg, otherSub := b.pool(t, "Other")
	if _, _, err := b.admin.Create(t.Context(), otherOrg, rc.srv.URL+"/other", []string{string(events.SeatAssigned)}); err != nil {
		t.Fatal(err)
	}
	run(t, b.config(t))

	b.publish(t, old, "")
	ev := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	meta := json.RawMessage(`{"team":"core"}`)
	ev.Data.SeatMetadata = meta
	b.publish(t, ev, "")
	b.publish(t, b.seatEvent(otherSub, uuid.NewString(), 1, events.SeatClaimedEvent), "") // the other org's endpoint wants only assigned

	d := b.waitStatus(t, all.ID, ev.ID, "succeeded", 10*time.Second)
	hits := rc.succeeded()
	if len(hits) != 1 {
		t.Fatalf("receiver got %d requests, want 1: %+v", len(hits), hits)
	}
	h := hits[0]
	if h.id != d.ID {
		t.Errorf("webhook-id %q, want the delivery's id %q", h.id, d.ID)
	}
	ts, err := strconv.ParseInt(h.timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q is not the unix time of the attempt", h.timestamp)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	_, _ = fmt.Fprintf(mac, "%s.%s.%s", h.id, h.timestamp, h.body)
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); h.signature != want {
		t.Errorf("webhook-signature %q, want %q", h.signature, want)
	}
	if h.contentType != "application/json" {
		t.Errorf("Content-Type %q", h.contentType)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(h.body, &body); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range body {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"api_version", "data", "timestamp", "type"}) {
		t.Errorf("body has keys %v, want api_version, data, timestamp, type", keys)
	}
	if v := string(body["api_version"]); v != `"2026-10"` {
		t.Errorf("api_version %s, want \"2026-10\" (the API version of Polar's SDK 1.0.1 payload types)", v)
	}
	var got struct {
		Type      string              `json:"type"`
		Timestamp time.Time           `json:"timestamp"`
		Data      events.CustomerSeat `json:"data"`
	}
	if err := json.Unmarshal(h.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "customer_seat.assigned" || !got.Timestamp.Equal(ev.Timestamp) || got.Data.ID != ev.Data.ID ||
		*got.Data.SubscriptionID != b.sub || got.Data.Status != events.SeatPending || string(got.Data.SeatMetadata) != string(meta) {
		t.Errorf("body %s does not carry the event %+v", h.body, ev)
	}
	if !bytes.Contains(h.body, []byte(`"claimed_at":null`)) {
		t.Errorf("body %s leaves out null fields of CustomerSeat", h.body)
	}
	// Nothing else arrives: not the old event, not to the revoked-only
	// endpoint, not the other organization's claimed event.
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.all()); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
	for _, ep := range []string{all.ID, revokedOnly.ID} {
		ds, err := b.admin.Deliveries(t.Context(), ep, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{all.ID: 1, revokedOnly.ID: 0}[ep]
		if len(ds) != want {
			t.Errorf("endpoint %s has %d deliveries, want %d", ep, len(ds), want)
		}
	}
	// The log says what happened.
	if len(d.AttemptLog) != 1 || deref(d.AttemptLog[0].StatusCode) != 204 || d.AttemptLog[0].Error != nil || d.Attempts != 1 {
		t.Errorf("attempt log %+v", d.AttemptLog)
	}
	// The secret is not in the database in clear.
	var sealed []byte
	if err := b.db.Pool.QueryRow(t.Context(), `SELECT secret_sealed FROM webhook_endpoints WHERE id = $1`, all.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret[len(SecretPrefix):len(SecretPrefix)+8])) {
		t.Error("the endpoint's secret is stored in clear")
	}
}

// A receiver that times out, answers 500, then redirects, then recovers
// gets the webhook in the end; every attempt carries the same webhook-id
// and body and is in the delivery log.
func TestRetriesUntilDelivered(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	rc.setRespond(func(h hit, n int) int {
		switch n {
		case 1:
			return -1500 // longer than the 300ms timeout
		case 2:
			return 500
		case 3:
			return 302
		}
		return 200
	})
	ep, _ := b.endpoint(t, rc.srv.URL)
	cfg := b.config(t)
	cfg.Timeout = 300 * time.Millisecond
	run(t, cfg)
	ev := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, ev, "")

	d := b.waitStatus(t, ep.ID, ev.ID, "succeeded", 15*time.Second)
	hits := rc.all()
	if len(hits) != 4 {
		t.Fatalf("receiver got %d requests, want 4", len(hits))
	}
	for _, h := range hits {
		if h.id != d.ID || !bytes.Equal(h.body, hits[0].body) {
			t.Errorf("attempt with webhook-id %s and body %s; want %s and the first body", h.id, h.body, d.ID)
		}
	}
	if d.Attempts != 4 || len(d.AttemptLog) != 4 || deref(d.LastStatusCode) != 200 || d.LastError != nil {
		t.Fatalf("delivery %+v", d)
	}
	log := d.AttemptLog
	if log[0].StatusCode != nil || !strings.Contains(deref(log[0].Error).(string), "no response within 300ms") {
		t.Errorf("attempt 1: %v %v, want a timeout", deref(log[0].StatusCode), deref(log[0].Error))
	}
	for i, want := range []int{500, 302, 200} {
		a := log[i+1]
		if deref(a.StatusCode) != want {
			t.Errorf("attempt %d: status %v, want %d", i+2, deref(a.StatusCode), want)
		}
		if (want == 200) != (a.Error == nil) {
			t.Errorf("attempt %d: error %v", i+2, deref(a.Error))
		}
	}
	if !strings.Contains(deref(log[2].Error).(string), "redirects are not followed") {
		t.Errorf("a 3xx is recorded as %v", deref(log[2].Error))
	}
	// Backoff: each retry waited at least RetryBase·2^(n-1) (capped).
	for i := 1; i < len(hits); i++ {
		wait := hits[i].at.Sub(hits[i-1].at)
		if i == 1 {
			wait -= 300 * time.Millisecond // the first attempt's timeout
		}
		if min := stream.Backoff(50*time.Millisecond, 200*time.Millisecond, uint64(i)); wait < min-20*time.Millisecond {
			t.Errorf("retry %d came %v after the previous attempt, want at least %v", i, wait, min)
		}
	}
}

// signedWith reports whether a request the receiver got carries the
// signature of key over its webhook-id, timestamp and body (computed here,
// not with Sign).
func signedWith(h hit, key string) bool {
	mac := hmac.New(sha256.New, []byte(key))
	_, _ = fmt.Fprintf(mac, "%s.%s.%s", h.id, h.timestamp, h.body)
	return h.signature == "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// A retry after rotate-secret is signed with the new secret, at once: the
// receiver refuses the delivery until it sees the new secret's signature,
// so the delivery only succeeds if a retry after the rotation carries it;
// the attempts before carried the old one, all under one webhook-id.
func TestRotatedSecretSignsRetries(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	ep, first := b.endpoint(t, rc.srv.URL)
	var mu sync.Mutex
	var second string // the rotated secret, once rotate-secret has returned
	rc.setRespond(func(h hit, n int) int {
		mu.Lock()
		defer mu.Unlock()
		if second != "" && signedWith(h, second) {
			return 200
		}
		return 500
	})
	cfg := b.config(t)
	cfg.MaxAttempts = 100 // never given up on during the test
	run(t, cfg)
	ev := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, ev, "")

	checkFor(t, 10*time.Second, func() error {
		if len(rc.all()) == 0 {
			return errors.New("no attempt yet")
		}
		return nil
	})
	_, rotated, err := b.admin.RotateSecret(t.Context(), ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	second = rotated
	mu.Unlock()

	d := b.waitStatus(t, ep.ID, ev.ID, "succeeded", 15*time.Second)
	hits := rc.all()
	if !signedWith(hits[0], first) {
		t.Errorf("the first attempt is not signed with the endpoint's first secret")
	}
	last := hits[len(hits)-1]
	if last.status != 200 || !signedWith(last, second) || signedWith(last, first) {
		t.Errorf("the delivered attempt (%d) is not signed with the rotated secret alone", last.status)
	}
	for i, h := range hits {
		if h.id != d.ID || !bytes.Equal(h.body, hits[0].body) {
			t.Errorf("attempt %d: webhook-id %s, want %s, with the same body", i+1, h.id, d.ID)
		}
		if !signedWith(h, first) && !signedWith(h, second) {
			t.Errorf("attempt %d is signed with neither secret", i+1)
		}
	}
	if d.Attempts != len(hits) || d.Attempts < 2 {
		t.Errorf("%d attempts recorded, %d received; want the same, at least 2", d.Attempts, len(hits))
	}
}

// After MaxAttempts a delivery is failed; after DisableAfter failed
// deliveries in a row the endpoint is disabled, its pending deliveries are
// skipped and new events are not queued for it. Enabling and redelivering
// sends them under their own webhook-ids.
func TestDisableEnableRedeliver(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	rc.setRespond(func(hit, int) int { return 503 })
	ep, _ := b.endpoint(t, rc.srv.URL)
	cfg := b.config(t)
	cfg.MaxAttempts, cfg.DisableAfter = 2, 2
	cfg.OrderGuard = time.Hour // seat C's version 2 waits for version 1
	run(t, cfg)

	seatC := uuid.NewString()
	c2 := b.seatEvent(b.sub, seatC, 2, events.SeatClaimedEvent)
	b.publish(t, c2, "")
	a1 := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, a1, "")
	first := b.waitStatus(t, ep.ID, a1.ID, "failed", 10*time.Second)
	if first.Attempts != 2 || len(first.AttemptLog) != 2 || !strings.Contains(deref(first.LastError).(string), "gave up after 2 attempts: HTTP 503") {
		t.Fatalf("failed delivery %+v", first)
	}
	if got, _ := b.admin.Get(t.Context(), ep.ID); !got.Enabled {
		t.Fatal("disabled after one failed delivery, want after 2")
	}
	b1 := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, b1, "")
	b.waitStatus(t, ep.ID, b1.ID, "failed", 10*time.Second)
	checkFor(t, 5*time.Second, func() error {
		got, err := b.admin.Get(t.Context(), ep.ID)
		if err != nil || got.Enabled || got.DisabledAt == nil || deref(got.DisabledReason) != "the last 2 deliveries failed" {
			return fmt.Errorf("endpoint %+v %v, want disabled", got, err)
		}
		return nil
	})
	if d := b.deliveryOf(t, ep.ID, c2.ID); d.Status != "skipped" || deref(d.LastError) != "endpoint disabled" || len(d.AttemptLog) != 0 {
		t.Errorf("pending delivery at disabling: %+v, want skipped", d)
	}
	// While disabled: nothing is queued, nothing sent, no redelivery.
	d1 := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, d1, "")
	checkFor(t, 5*time.Second, func() error {
		var n int
		err := b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM webhook_events WHERE id = $1`, d1.ID).Scan(&n)
		if err == nil && n != 1 {
			err = fmt.Errorf("event not ingested yet")
		}
		return err
	})
	hitsWhileDisabled := len(rc.all())
	if hitsWhileDisabled != 4 {
		t.Errorf("receiver got %d requests, want 4 (2 attempts × 2 events)", hitsWhileDisabled)
	}
	ds, _ := b.admin.Deliveries(t.Context(), ep.ID, "", 100)
	if len(ds) != 3 {
		t.Errorf("%d deliveries, want 3 (none for the event after disabling)", len(ds))
	}
	if _, err := b.admin.Redeliver(t.Context(), first.ID); events.ErrorCode(err) != events.CodeConflict {
		t.Errorf("redeliver to a disabled endpoint: %v, want a conflict", err)
	}

	// Enable, heal the receiver, redeliver what failed or was skipped.
	rc.setRespond(nil)
	if got, err := b.admin.Enable(t.Context(), ep.ID); err != nil || !got.Enabled || got.DisabledAt != nil {
		t.Fatalf("enable: %+v %v", got, err)
	}
	n, err := b.admin.RedeliverFailed(t.Context(), ep.ID)
	if err != nil || n != 3 {
		t.Fatalf("redeliver failed: %d %v, want 3", n, err)
	}
	b.waitStatus(t, ep.ID, a1.ID, "succeeded", 10*time.Second)
	b.waitStatus(t, ep.ID, b1.ID, "succeeded", 10*time.Second)
	// C's version 2 still waits for version 1, which comes now.
	if d := b.deliveryOf(t, ep.ID, c2.ID); d.Status != "pending" || len(d.AttemptLog) != 0 {
		t.Errorf("seat C version 2 before version 1 arrived: %+v", d)
	}
	c1 := b.seatEvent(b.sub, seatC, 1, events.SeatAssigned)
	b.publish(t, c1, "")
	b.waitStatus(t, ep.ID, c2.ID, "succeeded", 10*time.Second)
	ok := rc.succeeded()
	if len(ok) != 4 {
		t.Fatalf("%d successful requests, want 4", len(ok))
	}
	if ok[2].id != b.deliveryOf(t, ep.ID, c1.ID).ID || ok[3].id != b.deliveryOf(t, ep.ID, c2.ID).ID {
		t.Errorf("seat C's events arrived out of order")
	}
	// A redelivery keeps the webhook-id of the failed attempts.
	for _, h := range ok[:2] {
		if h.id != b.deliveryOf(t, ep.ID, a1.ID).ID && h.id != b.deliveryOf(t, ep.ID, b1.ID).ID {
			t.Errorf("redelivered with a new webhook-id %s", h.id)
		}
	}
	a := b.deliveryOf(t, ep.ID, a1.ID)
	if a.Attempts != 1 || len(a.AttemptLog) != 3 {
		t.Errorf("redelivered delivery: %d attempts in this run, %d in the log; want 1 and 3", a.Attempts, len(a.AttemptLog))
	}
	// The event from while it was disabled is not sent: Polar's rule.
	if ds, _ := b.admin.queryDeliveries(t.Context(), b.db.Pool, `d.event_id = $1`, d1.ID); len(ds) != 0 {
		t.Errorf("event from while the endpoint was disabled was queued: %+v", ds)
	}
	// A single delivery can be sent again, even a successful one.
	again, err := b.admin.Redeliver(t.Context(), a.ID)
	if err != nil || again.Status != "pending" {
		t.Fatalf("redeliver: %+v %v", again, err)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := len(rc.succeeded()); n != 5 {
			return fmt.Errorf("%d successful requests, want 5", n)
		}
		return nil
	})
	if last := rc.succeeded()[4]; last.id != a.ID {
		t.Errorf("single redelivery has webhook-id %s, want %s", last.id, a.ID)
	}
}

// A seat's events reach an endpoint in version order even when they come
// out of the stream in another order and the first one needs retries;
// another seat's events are not held up meanwhile.
func TestPerSeatOrder(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	seatS, seatT := uuid.NewString(), uuid.NewString()
	rc.setRespond(func(h hit, n int) int {
		if h.seat == seatS && h.typ == string(events.SeatAssigned) && n <= 3 {
			return 500
		}
		return 200
	})
	ep, _ := b.endpoint(t, rc.srv.URL)
	cfg := b.config(t)
	cfg.RetryBase, cfg.RetryMax = 150*time.Millisecond, 300*time.Millisecond
	// Two replicas, as two seatd webhooks processes would run.
	run(t, cfg)
	run(t, cfg)

	s := []events.SeatEvent{
		b.seatEvent(b.sub, seatS, 1, events.SeatAssigned),
		b.seatEvent(b.sub, seatS, 2, events.SeatClaimedEvent),
		b.seatEvent(b.sub, seatS, 3, events.SeatRevokedEvent),
	}
	tt := []events.SeatEvent{
		b.seatEvent(b.sub, seatT, 1, events.SeatAssigned),
		b.seatEvent(b.sub, seatT, 2, events.SeatClaimedEvent),
	}
	// Newest first: the stream holds them out of order.
	b.publish(t, s[2], "")
	b.publish(t, s[1], "")
	b.publish(t, tt[0], "")
	b.publish(t, tt[1], "")
	time.Sleep(200 * time.Millisecond)
	b.publish(t, s[0], "")

	b.waitStatus(t, ep.ID, s[2].ID, "succeeded", 15*time.Second)
	var order []string
	var tDone, sFirstOK time.Time
	for _, h := range rc.all() {
		if h.seat == seatS {
			order = append(order, fmt.Sprintf("%s:%d", h.typ, h.status))
			if h.status == 200 && sFirstOK.IsZero() {
				sFirstOK = h.at
			}
		}
		if h.seat == seatT && h.typ == string(events.SeatClaimedEvent) {
			tDone = h.at
		}
	}
	want := []string{"customer_seat.assigned:500", "customer_seat.assigned:500", "customer_seat.assigned:500",
		"customer_seat.assigned:200", "customer_seat.claimed:200", "customer_seat.revoked:200"}
	if !slices.Equal(order, want) {
		t.Errorf("seat S's requests in order:\n%v\nwant\n%v", order, want)
	}
	if tDone.IsZero() || !tDone.Before(sFirstOK) {
		t.Errorf("seat T's events waited for seat S's retries (T done %v, S first success %v)", tDone, sFirstOK)
	}
}

// Each event reaches each endpoint once, under a webhook-id of its own,
// however often it is published and however many replicas run.
func TestOneWebhookIDPerEventAndEndpoint(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	ep1, _ := b.endpoint(t, rc.srv.URL+"/one")
	ep2, _ := b.endpoint(t, rc.srv.URL+"/two")
	cfg := b.config(t)
	run(t, cfg)
	run(t, cfg)
	var evs []events.SeatEvent
	for range 10 {
		seat := uuid.NewString()
		for v, typ := range EventTypes {
			evs = append(evs, b.seatEvent(b.sub, seat, v+1, typ))
		}
	}
	for _, ev := range evs {
		b.publish(t, ev, "")
		// Published again past the dedupe window, as a relay might.
		b.publish(t, ev, "again-"+ev.ID)
	}
	checkFor(t, 20*time.Second, func() error {
		if n := len(rc.all()); n < 2*len(evs) {
			return fmt.Errorf("%d requests, want %d", n, 2*len(evs))
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // any duplicate would arrive now
	hits := rc.all()
	if len(hits) != 2*len(evs) {
		t.Fatalf("%d requests for %d events × 2 endpoints", len(hits), len(evs))
	}
	ids := map[string]string{}   // webhook-id → path+seat+type
	per := map[string][]string{} // path+seat+type → webhook-ids
	for _, h := range hits {
		key := h.seat + " " + h.typ
		if prev, dup := ids[h.id]; dup {
			t.Errorf("webhook-id %s used for %s and again for %s", h.id, prev, key)
		}
		ids[h.id] = key
		per[key] = append(per[key], h.id)
	}
	for _, ev := range evs {
		key := ev.Data.ID + " " + string(ev.Type)
		got := per[key]
		want := []string{b.deliveryOf(t, ep1.ID, ev.ID).ID, b.deliveryOf(t, ep2.ID, ev.ID).ID}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("event %s: webhook-ids %v, want one per endpoint %v", key, got, want)
		}
	}
}

// A message that cannot become a webhook (not JSON, or refused by the
// database) is dropped with a log line; the events around it are delivered.
func TestBadEventsDoNotBlock(t *testing.T) {
	b := setup(t)
	rc := newReceiver(t)
	ep, _ := b.endpoint(t, rc.srv.URL)
	if _, err := b.js.Publish(t.Context(), events.SeatEventSubject(events.SeatAssigned), []byte("{not json"), jetstream.WithMsgID("junk")); err != nil {
		t.Fatal(err)
	}
	huge := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	huge.Version = 3_000_000_000 // beyond Postgres's integer: refused by the database
	b.publish(t, huge, "")
	good := b.seatEvent(b.sub, uuid.NewString(), 1, events.SeatAssigned)
	b.publish(t, good, "")
	run(t, b.config(t))

	b.waitStatus(t, ep.ID, good.ID, "succeeded", 10*time.Second)
	checkFor(t, 10*time.Second, func() error {
		cons, err := b.js.Consumer(t.Context(), events.SeatEventsStream, Consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	var n int
	if err := b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM webhook_events`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d events recorded (%v), want only the good one", n, err)
	}
	if len(rc.all()) != 1 {
		t.Errorf("receiver got %d requests, want 1", len(rc.all()))
	}
}
