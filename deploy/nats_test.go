package deploy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
)

// parseNATSConf parses a NATS config with nats-server's own parser, with
// NATS_SERVER_NAME set as the container would set it.
func parseNATSConf(t *testing.T, path, serverName string) *server.Options {
	t.Helper()
	t.Setenv("NATS_SERVER_NAME", serverName)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server cannot read %s: %v", path, err)
	}
	return opts
}

// checkNATSConf checks what seatd needs of a node's configuration.
func checkNATSConf(t *testing.T, path, serverName string, routeHosts []string) *server.Options {
	t.Helper()
	o := parseNATSConf(t, path, serverName)
	if o.ServerName != serverName {
		t.Errorf("%s: server_name %q, want %q from NATS_SERVER_NAME", path, o.ServerName, serverName)
	}
	if !o.JetStream || o.StoreDir == "" {
		t.Errorf("%s: JetStream %v with store %q", path, o.JetStream, o.StoreDir)
	}
	if !o.SyncAlways {
		t.Errorf("%s: sync_interval is not always", path)
	}
	if o.MaxPayload < 4<<20 {
		t.Errorf("%s: max_payload %d < 4 MiB, the largest batch seatd accepts", path, o.MaxPayload)
	}
	if o.Cluster.Name == "" || o.Cluster.Port == 0 {
		t.Errorf("%s: no cluster name or port: %+v", path, o.Cluster)
	}
	var got []string
	for _, r := range o.Routes {
		got = append(got, r.Host)
	}
	var want []string
	for _, h := range routeHosts {
		want = append(want, net.JoinHostPort(h, strconv.Itoa(o.Cluster.Port)))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: routes %v, want %v", path, got, want)
	}
	if o.HTTPPort == 0 {
		t.Errorf("%s: no monitoring port: the health checks need /healthz", path)
	}
	return o
}

func TestNATSClusterConfigs(t *testing.T) {
	checkNATSConf(t, "nats-cluster.conf", "nats-2", []string{"nats-1", "nats-2", "nats-3"})
	o := checkNATSConf(t, "k8s/base/nats.conf", "nats-0",
		[]string{"nats-0.nats-headless", "nats-1.nats-headless", "nats-2.nats-headless"})
	if o.PidFile != "/var/run/nats/nats.pid" {
		t.Errorf("k8s nats.conf: pid_file %q: the preStop hook signals lame duck mode through /var/run/nats/nats.pid", o.PidFile)
	}
}

// TestRunNATSClusterConfigs runs each NATS cluster configuration as three
// real nats-server processes, with only its addresses moved to loopback
// ports and its store to a temporary directory, and sets up seatd's
// streams on it at 3 replicas, as seatd does at start.
func TestRunNATSClusterConfigs(t *testing.T) {
	bin := natsServerBinary(t)
	for _, c := range []struct {
		conf  string
		hosts []string
	}{
		{"nats-cluster.conf", []string{"nats-1", "nats-2", "nats-3"}},
		{"k8s/base/nats.conf", []string{"nats-0.nats-headless", "nats-1.nats-headless", "nats-2.nats-headless"}},
	} {
		t.Run(strings.ReplaceAll(c.conf, "/", "_"), func(t *testing.T) { runCluster(t, bin, c.conf, c.hosts) })
	}
}

func runCluster(t *testing.T, bin, confPath string, hosts []string) {
	src, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	routePorts := make([]int, len(hosts))
	for i := range hosts {
		routePorts[i] = freePort(t)
	}
	var urls []string
	var procs []*exec.Cmd
	var logs []*bytes.Buffer
	var monitor []int
	for i, host := range hosts {
		client, mon := freePort(t), freePort(t)
		conf := string(src)
		for _, r := range []struct{ old, new string }{
			{"0.0.0.0:4222", fmt.Sprintf("127.0.0.1:%d", client)},
			{"0.0.0.0:8222", fmt.Sprintf("127.0.0.1:%d", mon)},
			{"0.0.0.0:6222", fmt.Sprintf("127.0.0.1:%d", routePorts[i])},
			{"/data/jetstream", filepath.Join(dir, host)},
			{"/var/run/nats/nats.pid", filepath.Join(dir, host+".pid")},
		} {
			if r.old == "/var/run/nats/nats.pid" && !strings.Contains(conf, r.old) {
				continue
			}
			if !strings.Contains(conf, r.old) {
				t.Fatalf("%s no longer has %q: update this test's loopback rewrite", confPath, r.old)
			}
			conf = strings.ReplaceAll(conf, r.old, r.new)
		}
		for j, h := range hosts {
			old := "nats-route://" + h + ":6222"
			if !strings.Contains(conf, old) {
				t.Fatalf("%s has no route %s", confPath, old)
			}
			conf = strings.ReplaceAll(conf, old, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))
		}
		path := filepath.Join(dir, host+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", path)
		cmd.Env = append(os.Environ(), "NATS_SERVER_NAME="+strings.Split(host, ".")[0])
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &syncWriter{w: &out}, &syncWriter{w: &out}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs, logs, monitor = append(procs, cmd), append(logs, &out), append(monitor, mon)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client))
	}
	t.Cleanup(func() {
		for i, p := range procs {
			_ = p.Process.Signal(syscall.SIGKILL)
			_ = p.Wait()
			if t.Failed() {
				t.Logf("--- nats-server %s ---\n%s", hosts[i], tail(logs[i].String(), 2000))
			}
		}
	})

	nc, err := stream.Connect(strings.Join(urls, ","), "seatd-deploy-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.WaitStreams(ctx, nc, js, stream.StreamConfig{Replicas: 3}, stream.WaitOptions{}); err != nil {
		t.Fatalf("seatd's streams at 3 replicas on %s: %v", confPath, err)
	}
	s, err := js.Stream(ctx, events.RequestsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("%s: %d replicas, cluster %+v", events.RequestsStream, info.Config.Replicas, info.Cluster)
	}
	if _, err := js.Publish(ctx, events.RequestsSubject, []byte("{}")); err != nil {
		t.Errorf("publish on the cluster: %v", err)
	}
	// Each node's health endpoint, as the probes use it.
	for i, port := range monitor {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", port))
		if err != nil {
			t.Errorf("%s /healthz: %v", hosts[i], err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s /healthz: %s", hosts[i], resp.Status)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a random free port below Linux's ephemeral range
// (32768-60999): an ephemeral one could be taken by any outgoing
// connection between our check and nats-server's bind.
func freePort(t *testing.T) int {
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
		l.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

// natsServerBinary finds nats-server >= 2.10 (SEATD_NATS_SERVER, GOBIN,
// GOPATH/bin, PATH): skipped without one, failed under CI=true, where
// .ci/run installs it.
func natsServerBinary(t *testing.T) string {
	t.Helper()
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
	re := regexp.MustCompile(`v2\.(\d+)\.\d+`)
	for _, c := range candidates {
		out, err := exec.Command(c, "--version").CombinedOutput()
		if m := re.FindStringSubmatch(string(out)); err == nil && m != nil {
			if minor, _ := strconv.Atoi(m[1]); minor >= 10 {
				return c
			}
		}
	}
	msg := "needs nats-server >= 2.10; install it with: go install github.com/nats-io/nats-server/v2@v2.15.2"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
