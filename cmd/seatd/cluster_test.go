package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage/storagetest"
)

// Scale-out: seatd's roles as separate processes on a 3-node JetStream
// cluster of real nats-server processes, streams at 3 replicas. A cold
// start of everything at once, the loss of a node (the stream leader, or
// another) mid-run, and a Postgres restart against the cluster.

// probe is one GET of a health endpoint.
func probe(client *http.Client, url string) (int, map[string]string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, map[string]string{"err": err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]string
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body
}

// rolesUp is a set of seatd children with an HTTP listener each (the
// ingress's, or SEATD_HEALTH_ADDR).
type rolesUp struct {
	procs []*proc
	addrs []string
}

func (u *rolesUp) start(r *rig, name, role string, extra ...string) {
	addr := "127.0.0.1:" + strconv.Itoa(clusterPort(r.t))
	env := "SEATD_HEALTH_ADDR=" + addr
	if role == "ingress" {
		env = "SEATD_HTTP_ADDR=" + addr
	}
	u.procs = append(u.procs, r.start(name, role, append([]string{env}, extra...)...))
	u.addrs = append(u.addrs, addr)
}

// waitReady waits until every role answers /readyz with 200, failing at
// once if one exits.
func (u *rolesUp) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	waitFor(t, timeout, "every role ready", func() (bool, string) {
		var waiting []string
		for i, p := range u.procs {
			if !p.Running() {
				t.Fatalf("%s exited (%s) while the cluster formed", p.name, p.cmd.ProcessState)
			}
			code, body := probe(client, "http://"+u.addrs[i]+"/readyz")
			if code != 200 {
				waiting = append(waiting, fmt.Sprintf("%s: %d %v", p.name, code, body))
			}
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
}

func (u *rolesUp) checkRunning(t *testing.T, when string) {
	t.Helper()
	for _, p := range u.procs {
		if !p.Running() {
			t.Errorf("%s exited (%s) %s", p.name, p.cmd.ProcessState, when)
		}
	}
}

// waitLines counts the log lines in which the roles said what they wait for.
func (u *rolesUp) waitLines() int {
	n := 0
	for _, p := range u.procs {
		n += strings.Count(p.Output(), `"msg":"waiting for `)
	}
	return n
}

// TestClusterColdStart starts the three NATS nodes, an ingress, two
// workers and a mailer at the same moment, as compose and Kubernetes do.
// Every role must wait for the cluster to form and become ready; none may
// exit. Then requests go through, and every stream has 3 replicas.
func TestClusterColdStart(t *testing.T) {
	cl := newNATSCluster(t)
	r := clusterRig(t, storagetest.NewDatabase(t), cl)
	tenants := provision(t, r.db, 2, 30)

	var u rolesUp
	begin := time.Now()
	cl.Start()
	u.start(r, "ingress", "ingress", "SEATD_RATE_LIMIT=0")
	u.start(r, "worker-1", "worker")
	u.start(r, "worker-2", "worker")
	u.start(r, "mailer", "mailer")
	u.waitReady(t, 90*time.Second)
	readyAfter := time.Since(begin)

	// Ready means working: 40 assigns per pool of 30 seats.
	client := &http.Client{Timeout: 20 * time.Second}
	base := "http://" + u.addrs[0]
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ten := range tenants {
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := postAssign(client, base, ten, fmt.Sprintf("cold-%d@example.com", i), false)
				mu.Lock()
				defer mu.Unlock()
				if c.err != nil {
					codes[-1]++
					return
				}
				codes[c.status]++
			}()
		}
	}
	wg.Wait()
	if codes[200] != 60 || codes[400] != 20 {
		t.Errorf("answers by status %v, want 60×200 and 20×400 (two pools of 30 seats, 40 requests each)", codes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range []string{events.RequestsStream, events.MailStream, events.SeatEventsStream, events.DeadLetterStream} {
		if replicas := settledReplicas(t, r, s); replicas != 3 {
			t.Errorf("stream %s: %d replicas, want 3", s, replicas)
		}
	}
	// A process with the default SEATD_NATS_REPLICAS=1 (a seatctl run)
	// sets the streams up too: it must not take the cluster's copies away.
	if err := stream.SetupStreams(ctx, r.js, stream.StreamConfig{Replicas: 1, AckWait: testAckWait}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{events.RequestsStream, events.MailStream} {
		if replicas := settledReplicas(t, r, s); replicas != 3 {
			t.Errorf("stream %s has %d replicas after a setup asking for 1: want 3 kept", s, replicas)
		}
	}
	u.checkRunning(t, "after a cold start")
	t.Logf("SUMMARY cluster cold start: 3 nats-server nodes + ingress + 2 workers + mailer started at once; all ready after %s; "+
		"%d 'waiting for' log lines; then 80 assigns: %v", readyAfter.Round(100*time.Millisecond), u.waitLines(), codes)
}

// TestClusterFirstSetupWithOneReplica: a process with the default
// SEATD_NATS_REPLICAS=1 (seatctl, or a replica missing the setting) may be
// the first to set the streams up on a fresh cluster. The requests stream
// it makes must still be one JetStream can replicate (not persisted
// asynchronously, which is for a single server), so the deployment's own
// setup raises it to 3.
func TestClusterFirstSetupWithOneReplica(t *testing.T) {
	cl := newNATSCluster(t)
	cl.Start()
	r := clusterRig(t, storagetest.NewDatabase(t), cl)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.WaitStreams(ctx, r.nc, r.js, stream.StreamConfig{Replicas: 1, AckWait: testAckWait}, stream.WaitOptions{}); err != nil {
		t.Fatalf("setup with one replica: %v", err)
	}
	s, err := r.js.Stream(ctx, events.RequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	if m := s.CachedInfo().Config.PersistMode; m != jetstream.DefaultPersistMode {
		t.Errorf("requests stream made on a cluster is persisted %s, want default", m)
	}
	if err := stream.WaitStreams(ctx, r.nc, r.js, stream.StreamConfig{Replicas: 3, AckWait: testAckWait}, stream.WaitOptions{}); err != nil {
		t.Fatalf("raising the streams to 3 replicas: %v", err)
	}
	if replicas := settledReplicas(t, r, events.RequestsStream); replicas != 3 {
		t.Errorf("requests stream has %d replicas, want 3", replicas)
	}
}

// settledReplicas waits until stream has a leader and every replica is
// current (an update or an election may be under way), and returns its
// configured replicas.
func settledReplicas(t *testing.T, r *rig, stream string) int {
	t.Helper()
	replicas := 0
	waitFor(t, 30*time.Second, "stream "+stream+" led, with every replica current", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		_, replicas, err = streamLeader(ctx, r.js, stream)
		return err == nil, fmt.Sprint(err)
	})
	return replicas
}

// TestStartBeforeDependencies starts an ingress and a worker before
// Postgres and NATS exist. They must not exit: /healthz answers 200,
// /readyz 503 naming what they wait for, the API 503 with Retry-After;
// once Postgres and then NATS come up, they become ready by themselves.
func TestStartBeforeDependencies(t *testing.T) {
	pg := storagetest.NewServer(t)
	cl := newNATSCluster(t)
	r := clusterRig(t, pg.URL(), cl)
	tenants := provision(t, r.db, 1, 5)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	var u rolesUp
	u.start(r, "ingress", "ingress", "SEATD_RATE_LIMIT=0")
	u.start(r, "worker", "worker")
	client := &http.Client{Timeout: 2 * time.Second}

	waitingFor := func(want string) {
		t.Helper()
		waitFor(t, 30*time.Second, "both roles waiting for "+want, func() (bool, string) {
			var state []string
			ok := true
			for i, addr := range u.addrs {
				if !u.procs[i].Running() {
					t.Fatalf("%s exited while waiting for %s", u.procs[i].name, want)
				}
				hcode, _ := probe(client, "http://"+addr+"/healthz")
				rcode, body := probe(client, "http://"+addr+"/readyz")
				state = append(state, fmt.Sprintf("%s: healthz %d readyz %d %v", u.procs[i].name, hcode, rcode, body))
				ok = ok && hcode == 200 && rcode == 503 && body["waiting_for"] == want
			}
			return ok, strings.Join(state, "; ")
		})
	}
	waitingFor("Postgres")
	resp, err := client.Post("http://"+u.addrs[0]+"/v1/customer-portal/seats", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("API while starting: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	time.Sleep(2 * time.Second) // well past the first retries: still waiting, not exited
	waitingFor("Postgres")

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitingFor("a NATS connection")
	cl.Start()
	u.waitReady(t, 90*time.Second)

	c := postAssign(&http.Client{Timeout: 20 * time.Second}, "http://"+u.addrs[0], tenants[0], "late@example.com", false)
	if c.err != nil || c.status != 200 {
		t.Fatalf("assign once ready: %d %s %v", c.status, c.body, c.err)
	}
	for _, p := range u.procs {
		for _, want := range []string{`"msg":"waiting for Postgres"`, `"msg":"waiting for a NATS connection"`} {
			if !strings.Contains(p.Output(), want) {
				t.Errorf("%s never logged %s", p.name, want)
			}
		}
	}
	u.checkRunning(t, "after waiting for Postgres and NATS")
}

// clusterCall is one client's assign, retried with its Idempotency-Key
// until it gets an answer that is not a server error.
type clusterCall struct {
	tenant   tenant
	email    string
	key      string
	async    bool
	status   int
	body     []byte
	attempts int
	lastErr  string
}

// do calls the ingresses in turn until one answers below 500, or ctx ends.
func (c *clusterCall) do(ctx context.Context, client *http.Client, bases []string, first int) {
	for attempt := 0; ; attempt++ {
		res := postAssignKey(client, bases[(first+attempt)%len(bases)], c.tenant, c.email, c.key, c.async)
		c.attempts++
		if res.err == nil && res.status < 500 {
			c.status, c.body = res.status, res.body
			return
		}
		if res.err != nil {
			c.lastErr = res.err.Error()
		} else {
			c.lastErr = fmt.Sprintf("%d %s", res.status, res.body)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestClusterNodeLoss SIGKILLs one NATS node while clients send thousands
// of assigns through two ingresses to two workers: once the leader of the
// requests stream, once another node. Clients that get no answer retry
// with the same Idempotency-Key. Every request a client saw accepted must
// be applied exactly once, no retrying client may be left without an
// answer, every pool must end exactly full, and no seatd process may exit.
func TestClusterNodeLoss(t *testing.T) {
	for _, victim := range []string{"stream leader", "follower"} {
		t.Run(strings.ReplaceAll(victim, " ", "-"), func(t *testing.T) { nodeLoss(t, victim) })
	}
}

func nodeLoss(t *testing.T, victim string) {
	n, pools, seats := 2000, 4, 350
	if testing.Short() || victim == "follower" {
		n, pools, seats = 1000, 4, 180
	}
	r, cl := newClusterRig(t, storagetest.NewDatabase(t))
	tenants := provision(t, r.db, pools, seats)
	var u rolesUp
	for _, name := range []string{"ingress-1", "ingress-2"} {
		u.start(r, name, "ingress", "SEATD_RATE_LIMIT=0", "SEATD_SYNC_TIMEOUT=5s")
	}
	u.start(r, "worker-1", "worker")
	u.start(r, "worker-2", "worker")
	u.waitReady(t, 60*time.Second)
	bases := []string{"http://" + u.addrs[0], "http://" + u.addrs[1]}

	calls := make([]*clusterCall, n)
	for i := range calls {
		k := i / pools
		email := fmt.Sprintf("user-%d@example.com", k)
		if k > 0 && k%25 == 0 {
			email = fmt.Sprintf("user-%d@example.com", k/2) // a duplicate: already_assigned
		}
		calls[i] = &clusterCall{tenant: tenants[i%pools], email: email, key: uuid.NewString(), async: i%2 == 1}
	}

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var answered atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 24; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				calls[i].do(ctx, client, bases, i)
				answered.Add(1)
			}
		}()
	}
	go func() {
		defer close(work)
		for i := range calls {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	// Mid-run, kill the victim.
	waitFor(t, 60*time.Second, "a third of the requests answered", func() (bool, string) {
		return answered.Load() >= int64(n/3), fmt.Sprintf("%d answered", answered.Load())
	})
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	leader, _, err := streamLeader(lctx, r.js, events.RequestsStream)
	lcancel()
	if err != nil && leader == "" {
		t.Fatalf("finding the requests stream's leader: %v", err)
	}
	killed := cl.Node(leader)
	if victim != "stream leader" {
		for _, node := range cl.nodes {
			if node.name != leader {
				killed = node
				break
			}
		}
	}
	answeredAtKill := answered.Load()
	killedAt := time.Since(begin)
	killed.Kill()
	wg.Wait()
	clientDone := time.Since(begin)

	// Every client has an answer; every accepted request is in the ledger.
	codes := map[int]int{}
	retried, unanswered := 0, 0
	var acceptedIDs []string
	for _, c := range calls {
		if c.attempts > 1 {
			retried++
		}
		if c.status == 0 {
			unanswered++
			if unanswered <= 5 {
				t.Errorf("a client never got an answer in %d attempts (last: %s)", c.attempts, c.lastErr)
			}
			continue
		}
		codes[c.status]++
		row, err := ledgerByKey(context.Background(), r.db, apiCall{tenant: c.tenant, key: c.key})
		if err != nil {
			t.Errorf("request answered %d has no ledger row (key %s): lost: %v", c.status, c.key, err)
			continue
		}
		acceptedIDs = append(acceptedIDs, row.id)
	}
	if unanswered > 0 {
		t.Fatalf("%d of %d clients never got an answer", unanswered, n)
	}
	waitSettled(t, r, acceptedIDs, 60*time.Second)
	wall := time.Since(begin)
	o := checkOutcome(t, r.db, acceptedIDs)
	checkPoolsFull(t, o, tenants)
	if o.deadLettered != 0 {
		t.Errorf("%d requests dead-lettered: a lost node is not a reason to give up", o.deadLettered)
	}
	// What each client was told matches the ledger: a 200 names the seat
	// the ledger holds, a 202 ended up with an outcome (checked above).
	mismatch := 0
	for _, c := range calls {
		if c.status != 200 {
			continue
		}
		var seat struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(c.body, &seat)
		row, err := ledgerByKey(context.Background(), r.db, apiCall{tenant: c.tenant, key: c.key})
		if err != nil || row.status != "succeeded" || row.seatID != seat.ID {
			mismatch++
		}
	}
	if mismatch != 0 {
		t.Errorf("%d clients were answered 200 with a seat the ledger does not record for their request", mismatch)
	}
	u.checkRunning(t, "after losing a NATS node")
	// Every stream carries on under a leader on a surviving node (a stream
	// the victim led elects one within about 10s).
	for _, s := range []string{events.RequestsStream, events.MailStream, events.SeatEventsStream, events.DeadLetterStream} {
		waitFor(t, 30*time.Second, "stream "+s+" led by a surviving node", func() (bool, string) {
			lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer lcancel()
			s, err := r.js.Stream(lctx, s)
			if err != nil {
				return false, err.Error()
			}
			info, err := s.Info(lctx)
			if err != nil {
				return false, err.Error()
			}
			l := ""
			if info.Cluster != nil {
				l = info.Cluster.Leader
			}
			return l != "" && l != killed.name, fmt.Sprintf("leader %q, %s was killed", l, killed.name)
		})
	}
	statuses := make([]string, 0, len(codes))
	for code, k := range codes {
		statuses = append(statuses, fmt.Sprintf("%d:%d", code, k))
	}
	sort.Strings(statuses)
	// How the ingresses rode it out: publishes that still failed after
	// retrying for SEATD_SYNC_TIMEOUT were answered 202 and published in
	// the background.
	deferred := 0
	for _, p := range u.procs {
		deferred += strings.Count(p.Output(), `"msg":"publish failed; answering 202`)
	}
	t.Logf("SUMMARY cluster node loss (%s): SIGKILL %s (requests stream leader was %s) at %s with %d/%d answered; "+
		"answers %s; clients that retried=%d; publishes deferred to the background=%d; %s; clients done=%s wall=%s",
		victim, killed.name, leader, killedAt.Round(100*time.Millisecond), answeredAtKill, n, strings.Join(statuses, " "),
		retried, deferred, o, clientDone.Round(100*time.Millisecond), wall.Round(100*time.Millisecond))
}

// TestClusterPostgresRestart is TestPostgresRestart against the 3-node
// cluster with streams at 3 replicas.
func TestClusterPostgresRestart(t *testing.T) {
	pg := storagetest.NewServer(t)
	r, _ := newClusterRig(t, pg.URL())
	run := restartMidFlow(t, r, "Postgres", pg.Stop, pg.Start)
	if run.o.deadLettered != 0 || deadLetters(t, r.js) != 0 {
		t.Errorf("%d requests dead-lettered (%d in the dead-letter stream): a Postgres restart is transient",
			run.o.deadLettered, deadLetters(t, r.js))
	}
	t.Logf("SUMMARY cluster Postgres restart: %s restarts=1 (down 1s, %d/%d applied before) wall=%s",
		run.o, run.doneBefore, run.n, run.wall.Round(100*time.Millisecond))
}
