package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
	"github.com/seatd/seatd/webhook"
)

// nodeDir holds Polar's SDK, the type checker and the driver; .ci/run
// installs its locked dependencies with npm ci.
const nodeDir = "../../webhook/testdata/node"

// requireNodeSDK returns the node binary, or skips the test when node or
// the SDK is missing; under CI=true it fails instead.
func requireNodeSDK(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI must run npm ci in webhook/testdata/node)", why)
		}
		t.Skipf("%s; run `npm ci` in webhook/testdata/node to drive seatd with Polar's SDK", why)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	for _, dep := range []string{"@polar-sh/sdk", "typescript"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", dep, "package.json")); err != nil {
			missing(dep + " is not installed")
		}
	}
	return node
}

// sdkWorld is what the driver needs to know of the deployment: the ids and
// tokens a seller's backend and its customers would have.
type sdkWorld struct {
	BaseURL       string            `json:"baseURL"`
	MailDir       string            `json:"mailDir"`
	WebhookPort   int               `json:"webhookPort"`
	WebhookSecret string            `json:"webhookSecret"`
	OrgName       string            `json:"orgName"`
	Seats         int               `json:"seats"`
	Emails        map[string]string `json:"emails"`
	ExternalID    string            `json:"externalCustomerID"`
	// ExternalMemberID is the external id of a member of Acme's buyer.
	ExternalMemberID string            `json:"externalMemberID"`
	Tokens           map[string]string `json:"tokens"`
	IDs              map[string]string `json:"ids"`
}

// TestPolarSDK points Polar's official TypeScript SDK (@polar-sh/sdk 1.0.1,
// API version 2026-10), unchanged, at a running `seatd serve` and drives
// every seat call of the customer portal and of the organization API,
// every error path the SDK types, and the webhooks seatd sends, verified
// with the SDK's validateEvent (webhook/testdata/node/polar-sdk.mjs). Every
// response is held against the SDK's own type declarations, so a property
// the SDK declares and seatd leaves out fails the test.
func TestPolarSDK(t *testing.T) {
	node := requireNodeSDK(t)
	seatdBinary(t)
	ctx := context.Background()
	dbURL := storagetest.NewDatabase(t)
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keyBytes, _ := hex.DecodeString(testSecretKey)
	keys, err := secret.NewKeys(keyBytes)
	if err != nil {
		t.Fatal(err)
	}
	must := func(v string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	product := func(org, name, interval string) string {
		t.Helper()
		p, err := db.CreateProduct(ctx, storage.ProductSpec{OrganizationID: org, Name: name, RecurringInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	pool := func(kind, customer, product string, seats int, status string) string {
		t.Helper()
		spec := storage.PoolSpec{Kind: kind, CustomerID: customer, ProductID: product, Seats: seats, Status: status}
		if kind == "subscription" {
			spec.Amount, spec.Currency = 4900, "eur"
		}
		return must(db.CreatePool(ctx, spec))
	}
	session := func(customer, member string) string {
		t.Helper()
		tok, _, err := db.CreateSession(ctx, customer, member, nil, time.Hour)
		return must(tok, err)
	}
	orgToken := func(org string, scopes ...string) string {
		t.Helper()
		tok, _, err := db.CreateOrgToken(ctx, keys, org, scopes, 0, "sdk test")
		return must(tok, err)
	}

	// Acme sells seats; its buyer hands them out through the portal, its
	// backend through the organization API.
	w := sdkWorld{OrgName: "Acme", Seats: 5, ExternalID: "crm-42", Tokens: map[string]string{}, IDs: map[string]string{},
		Emails: map[string]string{"invitee": "ada@example.com", "immediate": "grace@example.com", "orgInvitee": "linus@example.com"}}
	acme := must(db.CreateOrganization(ctx, w.OrgName, true, false))
	buyer := must(db.CreateCustomer(ctx, acme, "buyer@acme.example", ""))
	must(db.CreateCustomer(ctx, acme, "crm@acme.example", w.ExternalID))
	w.IDs["product"] = product(acme, "Pro", "month")
	lifetime := product(acme, "Pro Lifetime", "")
	w.IDs["subscription"] = pool("subscription", buyer, w.IDs["product"], w.Seats, "active")
	w.IDs["fullSubscription"] = pool("subscription", buyer, w.IDs["product"], 0, "active")
	w.IDs["order"] = pool("order", buyer, lifetime, 3, "paid")
	w.IDs["pendingOrder"] = pool("order", buyer, lifetime, 3, "pending")
	rival := must(db.CreateCustomer(ctx, acme, "rival@acme.example", ""))
	w.IDs["otherCustomerSubscription"] = pool("subscription", rival, w.IDs["product"], 2, "active")
	w.Tokens["customer"] = session(buyer, "")
	plain := must(db.CreateMember(ctx, storage.MemberSpec{CustomerID: buyer, Email: "intern@acme.example", Role: "member"}))
	w.Tokens["member"] = session(buyer, plain)
	w.Tokens["org"] = orgToken(acme, storage.ScopeSeatsRead, storage.ScopeSeatsWrite)
	w.Tokens["orgRead"] = orgToken(acme, storage.ScopeSeatsRead)

	// Another organization, which must see none of Acme's seats.
	globex := must(db.CreateOrganization(ctx, "Globex", true, false))
	gBuyer := must(db.CreateCustomer(ctx, globex, "buyer@globex.example", ""))
	w.IDs["otherOrgSubscription"] = pool("subscription", gBuyer, product(globex, "Globex Seats", "month"), 2, "active")
	w.Tokens["otherOrg"] = orgToken(globex, storage.ScopeSeatsRead, storage.ScopeSeatsWrite)

	// Acme's buyer has a member known by an external id, for Polar's
	// MemberEmailMismatch.
	w.ExternalMemberID = "emp-42"
	must(db.CreateMember(ctx, storage.MemberSpec{CustomerID: buyer, Email: "emp@acme.example", ExternalID: w.ExternalMemberID}))

	// An organization that turned seat-based pricing off after assigning
	// seats: a pending one (its invitation is mailed once seatd runs) and
	// a revoked one.
	initech := must(db.CreateOrganization(ctx, "Initech", true, false))
	iBuyer := must(db.CreateCustomer(ctx, initech, "buyer@initech.example", ""))
	w.IDs["disabledSubscription"] = pool("subscription", iBuyer, product(initech, "Initech Seats", "month"), 2, "active")
	w.Tokens["disabledCustomer"] = session(iBuyer, "")
	w.Tokens["disabledOrg"] = orgToken(initech, storage.ScopeSeatsRead, storage.ScopeSeatsWrite)
	w.Emails["disabled"] = "milton@initech.example"
	apply := func(r events.Request) *events.CustomerSeat {
		t.Helper()
		r.ID, r.CustomerID = uuid.NewString(), iBuyer
		res, err := db.ApplySerial(ctx, storage.Settings{Keys: keys}, []events.Request{r})
		if err != nil || !res[0].OK() {
			t.Fatalf("Initech %s: %v %+v", r.Op, err, res)
		}
		return res[0].Seat
	}
	assignInitech := func(email string) string {
		t.Helper()
		return apply(events.Request{Op: events.OpAssign, Assign: &events.SeatAssign{SubscriptionID: w.IDs["disabledSubscription"], Email: email}}).ID
	}
	w.IDs["disabledSeat"] = assignInitech(w.Emails["disabled"])
	w.IDs["disabledRevokedSeat"] = assignInitech("bill@initech.example")
	apply(events.Request{Op: events.OpRevoke, SeatID: w.IDs["disabledRevokedSeat"]})
	if _, err := db.Pool.Exec(ctx, `UPDATE organizations SET seat_based_pricing = false WHERE id = $1`, initech); err != nil {
		t.Fatal(err)
	}

	// An organization with the member model: its seats carry a Member.
	umbrella := must(db.CreateOrganization(ctx, "Umbrella", true, true))
	uBuyer := must(db.CreateCustomer(ctx, umbrella, "buyer@umbrella.example", ""))
	w.IDs["memberSubscription"] = pool("subscription", uBuyer, product(umbrella, "Umbrella Seats", "year"), 3, "active")
	w.Tokens["memberOrg"] = orgToken(umbrella, storage.ScopeSeatsRead, storage.ScopeSeatsWrite)
	w.Tokens["memberModelCustomer"] = session(uBuyer, "")
	w.Emails["member"] = "jill@umbrella.example"

	// Acme's webhook endpoint is the driver's receiver.
	sealer, err := webhook.NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	w.WebhookPort = freePort(t)
	_, w.WebhookSecret, err = (&webhook.Admin{DB: db, Sealer: sealer}).Create(ctx, acme,
		"http://127.0.0.1:"+strconv.Itoa(w.WebhookPort)+"/polar", []string{"customer_seat.assigned", "customer_seat.claimed", "customer_seat.revoked"})
	if err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	port := freePort(t)
	w.BaseURL = "http://127.0.0.1:" + strconv.Itoa(port)
	w.MailDir = filepath.Join(dataDir, "mail")
	serve := startProc(t, "serve", childEnv(
		"SEATD_DATA_DIR="+dataDir,
		"SEATD_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"DATABASE_URL="+dbURL,
		"SEATD_SECRET_KEY="+testSecretKey,
		"SEATD_PUBLIC_URL="+w.BaseURL,
	), "serve")
	waitHTTP(t, serve, w.BaseURL)

	cfg, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "world.json")
	if err := os.WriteFile(file, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmdCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cmdCtx, node, "polar-sdk.mjs", file)
	cmd.Dir = nodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()

	type stepResult struct {
		Step    string `json:"step"`
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		Summary bool   `json:"summary"`
		Steps   int    `json:"steps"`
		Failed  int    `json:"failed"`
	}
	var summary *stepResult
	passed := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r stepResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("driver output %q: %v", sc.Text(), err)
			continue
		}
		switch {
		case r.Summary:
			summary = &r
		case r.OK:
			passed++
		default:
			t.Errorf("%s: %s", r.Step, r.Error)
		}
	}
	if summary == nil || runErr != nil && !t.Failed() {
		t.Fatalf("driver did not finish: %v\n%s\n%s", runErr, out, stderr.String())
	}
	if summary.Failed != 0 || passed != summary.Steps {
		t.Errorf("%d of %d steps failed", summary.Steps-passed, summary.Steps)
	}

	// What the SDK saw is what Postgres holds: every webhook Acme's
	// endpoint was owed was delivered, none to anyone else.
	var pending, delivered int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status <> 'succeeded'), count(*) FILTER (WHERE status = 'succeeded')
		FROM webhook_deliveries`).Scan(&pending, &delivered); err != nil {
		t.Fatal(err)
	}
	if pending != 0 || delivered == 0 {
		t.Errorf("webhook deliveries: %d not succeeded, %d succeeded", pending, delivered)
	}
	serve.Signal(syscall.SIGTERM)
	if code := serve.Wait(20 * time.Second); code != 0 {
		t.Errorf("seatd serve: exit %d after SIGTERM", code)
	}
	t.Logf("SUMMARY Polar SDK: %d steps passed through both APIs, %d webhooks delivered and verified", passed, delivered)
}
