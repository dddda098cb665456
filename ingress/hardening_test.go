package ingress_test

import (
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
)

func TestRateLimitPerToken(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{RateLimit: 1, RateBurst: 3})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 50})
	other := e.Tenant(seatdtest.TenantOptions{})
	var limited *seatdtest.Response
	for i := 0; i < 5; i++ {
		r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID,
			"email": "rl" + strconv.Itoa(i) + "@example.com"})
		if r.Status == 429 {
			limited = &r
			break
		}
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if limited == nil {
		t.Fatal("5 quick writes with burst 3 were never limited")
	}
	if ra, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", limited.Header.Get("Retry-After"))
	}
	if limited.JSON(t)["error"] != "TooManyRequests" {
		t.Errorf("429 body %s", limited.Body)
	}
	// Another token has its own bucket, and reads are not limited.
	if r := e.Do("POST", seatsPath, other.Token, map[string]any{"subscription_id": other.SubscriptionID, "email": "o@example.com"}); r.Status != 200 {
		t.Errorf("other token: %d", r.Status)
	}
	if r := e.Do("GET", seatsPath+"?subscription_id="+ten.SubscriptionID, ten.Token, nil); r.Status != 200 {
		t.Errorf("read while limited: %d", r.Status)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := e.Do("POST", seatsPath, ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": "later@example.com"}); r.Status != 200 {
		t.Errorf("after refill: %d %s", r.Status, r.Body)
	}
}

func TestNoVersionBannerAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	for _, path := range []string{"/healthz", "/nope", seatsPath + "/requests/x"} {
		r := e.Do("GET", path, "", nil)
		if s := r.Header.Get("Server"); s != "" {
			t.Errorf("%s: Server header %q", path, s)
		}
	}
	if r := e.Do("GET", "/nope", "", nil); r.Status != 404 || r.JSON(t)["error"] != "ResourceNotFound" {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
	if r := e.Do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Errorf("readyz: %d %s", r.Status, r.Body)
	}
}

// TestSlowHeadersAreCut: a client that never finishes its headers is
// disconnected by the server's header timeout (as configured by seatd).
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	hs := e.Ingress.HTTPServer()
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("seatd's HTTP server lacks timeouts: %+v", hs)
	}
	hs.ReadHeaderTimeout = 200 * time.Millisecond // the same server, quicker
	srv := httptest.NewUnstartedServer(hs.Handler)
	srv.Config = hs
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }() // the server has cut it, or the test failed
	// Had the write failed, the read below would fail at once and pass.
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil { // never ends
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	start := time.Now()
	_, err = conn.Read(buf)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("slow-header connection not cut: err %v after %s", err, time.Since(start))
	}
}
