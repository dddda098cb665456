package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events/stream"
)

// A NATS JetStream cluster of real nats-server processes on loopback, for
// the cluster tests: three nodes, each on its own random client and route
// ports and its own store, that can be SIGKILLed and started again.

// natsServerMinor is the oldest nats-server 2.x the cluster tests accept.
const natsServerMinor = 10

var (
	natsBinOnce sync.Once
	natsBinPath string
	natsBinWhy  string
)

// natsServerBinary returns a nats-server >= 2.10 from SEATD_NATS_SERVER,
// GOBIN, GOPATH/bin or PATH. Without one the test is skipped, or fails
// under CI=true, where .ci/run installs it.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsBinOnce.Do(func() { natsBinPath, natsBinWhy = findNATSServer() })
	if natsBinPath != "" {
		return natsBinPath
	}
	msg := "cluster test needs nats-server >= 2." + strconv.Itoa(natsServerMinor) + " (" + natsBinWhy +
		"); install it with: go install github.com/nats-io/nats-server/v2@v2.15.2"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func findNATSServer() (path, why string) {
	var candidates []string
	if p := os.Getenv("SEATD_NATS_SERVER"); p != "" {
		candidates = append(candidates, p)
	}
	// The go tool on PATH, else where the official tarball puts it.
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	if out, err := exec.Command(goTool, "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
			candidates = append(candidates, filepath.Join(strings.TrimSpace(lines[0]), "nats-server"))
		}
		if len(lines) > 1 {
			for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				candidates = append(candidates, filepath.Join(gp, "bin", "nats-server"))
			}
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		candidates = append(candidates, p)
	}
	versionRE := regexp.MustCompile(`v2\.(\d+)\.(\d+)`)
	var seen []string
	for _, c := range candidates {
		out, err := exec.Command(c, "--version").CombinedOutput()
		if err != nil {
			continue
		}
		m := versionRE.FindStringSubmatch(string(out))
		if m == nil {
			continue
		}
		if minor, _ := strconv.Atoi(m[1]); minor >= natsServerMinor {
			return c, ""
		}
		seen = append(seen, c+" is "+m[0])
	}
	if len(seen) > 0 {
		return "", strings.Join(seen, ", ")
	}
	return "", "none found in SEATD_NATS_SERVER, GOBIN, GOPATH/bin or PATH"
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// clusterPort returns a random free port below Linux's ephemeral range
// (32768-60999). A port from freePort is ephemeral: between our check and
// nats-server's bind, any outgoing connection on the machine may take it,
// and a node that cannot bind breaks the whole cluster. Ports below the
// range are only ever taken by a listener that asks for one.
func clusterPort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = l.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

// natsNode is one nats-server process of a natsCluster.
type natsNode struct {
	t     testing.TB
	bin   string
	name  string
	port  int
	conf  string
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	out   *logBuffer
	kills int
}

// natsCluster is three nodes routed to each other.
type natsCluster struct {
	t     testing.TB
	nodes []*natsNode
}

// newNATSCluster writes the configuration of a 3-node cluster; Start
// starts it.
func newNATSCluster(t testing.TB) *natsCluster {
	t.Helper()
	bin := natsServerBinary(t)
	const n = 3
	c := &natsCluster{t: t}
	routePorts := make([]int, n)
	var routes []string
	for i := range routePorts {
		routePorts[i] = clusterPort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
	}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		node := &natsNode{t: t, bin: bin, name: fmt.Sprintf("n%d", i+1), port: clusterPort(t), out: &logBuffer{}}
		store := filepath.Join(dir, node.name)
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 4MB
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 2GB
}
cluster {
  name: seatd-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, node.name, node.port, store, routePorts[i], strings.Join(routes, ", "))
		node.conf = filepath.Join(dir, node.name+".conf")
		if err := os.WriteFile(node.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Getenv("SEATD_TEST_LOG") != "" {
			node.out.tee = "nats-" + node.name
		}
		c.nodes = append(c.nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.Kill()
			if t.Failed() {
				t.Logf("--- output of nats-server %s, last 3 kB ---\n%s", node.name, node.out.Tail(3000))
			}
		}
	})
	return c
}

// Start starts every node at once.
func (c *natsCluster) Start() {
	for _, n := range c.nodes {
		n.Start()
	}
}

// URLs is the NATS_URL of the cluster: every node.
func (c *natsCluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node called name (as JetStream names leaders).
func (c *natsCluster) Node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (n *natsNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Start starts the node (again, on the same ports and store).
func (n *natsNode) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start nats-server %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
}

// Kill SIGKILLs the node, if it runs, and waits until it has exited.
func (n *natsNode) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		n.kills++
	}
	<-n.done
	n.cmd = nil
}

// streamLeader returns the name of the node leading stream, once the
// stream has a leader and every replica is current.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (leader string, replicas int, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", 0, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", 0, fmt.Errorf("stream %s has no leader", stream)
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current {
			return info.Cluster.Leader, 0, fmt.Errorf("replica %s of %s is not current", p.Name, stream)
		}
	}
	return info.Cluster.Leader, info.Config.Replicas, nil
}

// newClusterRig is newRig on a 3-node cluster: a started natsCluster and
// the streams at 3 replicas, set up by the test's own client (which waits
// for the cluster to form as seatd does).
func newClusterRig(t *testing.T, dbURL string) (*rig, *natsCluster) {
	t.Helper()
	cl := newNATSCluster(t)
	cl.Start()
	r := clusterRig(t, dbURL, cl)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.WaitStreams(ctx, r.nc, r.js, stream.StreamConfig{Replicas: 3, AckWait: testAckWait},
		stream.WaitOptions{}); err != nil {
		t.Fatalf("the 3-node cluster never took the streams: %v", err)
	}
	return r, cl
}

// clusterRig is a rig for cl (started or not): a client connection and
// the environment of every seatd child, with SEATD_NATS_REPLICAS=3.
func clusterRig(t *testing.T, dbURL string, cl *natsCluster) *rig {
	t.Helper()
	seatdBinary(t) // build before any clock starts
	return rigOn(t, dbURL, cl.URLs(), 5*time.Second, "SEATD_NATS_REPLICAS=3")
}
