package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// Process control for the fault tests: seatd children, an embedded NATS
// server that can be stopped and started again on the same port and store,
// and a rig that wires them to one database.

const (
	// testSecretKey is the SEATD_SECRET_KEY of every child: replicas of
	// one deployment share it.
	testSecretKey = "5ea7d05ec7e7c0ffee5ea7d05ec7e7c0ffee5ea7d05ec7e7c0ffee5ea7d05ec7"
	// testAckWait is the worker consumer's AckWait: how long the requests
	// a killed worker held wait before another worker gets them.
	testAckWait = 2 * time.Second
)

// proc is a seatd child process. Its combined output is kept for the
// test's assertions and printed (the tail) when the test fails; set
// SEATD_TEST_LOG to stream it as well.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{} // closed when the process has exited
}

// startProc starts the seatd binary with args and exactly env. t.Cleanup
// kills it if it is still running.
func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	out := &logBuffer{}
	if os.Getenv("SEATD_TEST_LOG") != "" {
		out.tee = name
	}
	cmd := exec.Command(seatdBinary(t), args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s (%s), last 6 kB ---\n%s", name, cmd.ProcessState, p.out.Tail(6000))
		}
	})
	return p
}

// Running reports whether the process has not exited yet.
func (p *proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (if it still runs) and waits until it has exited.
func (p *proc) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig.
func (p *proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it), failing the test on timeout.
func (p *proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %s", p.name, timeout)
		return 0
	}
}

// Output is everything the process wrote so far.
func (p *proc) Output() string { return p.out.String() }

// logBuffer collects a child's output.
type logBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	tee string // when set, also copy to stderr prefixed with this name
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tee != "" {
		for _, line := range strings.SplitAfter(string(p), "\n") {
			if line != "" {
				fmt.Fprintf(os.Stderr, "[%s] %s", l.tee, line)
			}
		}
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// childEnv is this process's environment without anything that would
// point a child at another deployment; the caller adds its own settings.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SEATD_") || strings.HasPrefix(k, "PG") ||
			k == "DATABASE_URL" || k == "NATS_URL" || k == "SMTP_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// freePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil { // the port must be free for the caller
		t.Fatal(err)
	}
	return port
}

// natsServer is an embedded JetStream server on a fixed port and store, so
// that it can be shut down and started again where the children expect it.
type natsServer struct {
	t    testing.TB
	port int
	dir  string
	mu   sync.Mutex
	srv  *server.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir()}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		n.port = freePort(t)
		if err = n.Start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Start starts the server (again).
func (n *natsServer) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// The store syncs every second, as seatdtest's does: these tests stop
	// the server cleanly, which flushes it.
	s, err := stream.StartServer(stream.ServerConfig{Port: n.port, StoreDir: n.dir, Fsync: time.Second})
	if err != nil {
		return err
	}
	n.srv = s
	return nil
}

// Stop shuts the server down, dropping every client connection.
func (n *natsServer) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// rig is one deployment under test: a database, a NATS server, and the
// environment every seatd child of the deployment gets.
type rig struct {
	t       *testing.T
	dbURL   string
	db      *storage.DB
	nats    *natsServer
	nc      *nats.Conn
	js      jetstream.JetStream
	dataDir string
	env     []string
}

func newRig(t *testing.T, dbURL string) *rig {
	t.Helper()
	seatdBinary(t) // build before any clock starts
	nats := startNATS(t)
	// A publish whose server went away fails after a while instead of
	// waiting forever, so the publisher can try again.
	r := rigOn(t, dbURL, nats.URL(), 3*time.Second)
	r.nats = nats
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.SetupStreams(ctx, r.js, stream.StreamConfig{AckWait: testAckWait}); err != nil {
		t.Fatal(err)
	}
	return r
}

// rigOn is a rig on the NATS server(s) at natsURL: a database handle, a
// client connection whose async publishes give up after publishTimeout,
// and the environment of every seatd child (plus extraEnv).
func rigOn(t *testing.T, dbURL, natsURL string, publishTimeout time.Duration, extraEnv ...string) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &rig{t: t, dbURL: dbURL, dataDir: t.TempDir()}
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	r.db = db
	r.nc, err = stream.Connect(natsURL, "seatd-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nc.Close)
	r.js, err = jetstream.New(r.nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		t.Fatal(err)
	}
	r.env = childEnv(append([]string{
		"DATABASE_URL=" + dbURL,
		"NATS_URL=" + natsURL,
		"SEATD_DATA_DIR=" + r.dataDir,
		"SEATD_SECRET_KEY=" + testSecretKey,
		"SEATD_ACK_WAIT=" + testAckWait.String(),
		"SEATD_LOG_LEVEL=info",
	}, extraEnv...)...)
	return r
}

// start runs `seatd role` in the deployment, with extra settings.
func (r *rig) start(name, role string, extra ...string) *proc {
	r.t.Helper()
	return startProc(r.t, name, append(append([]string{}, r.env...), extra...), role)
}

// waitFor polls cond until it holds or timeout passes; cond also returns
// a description of where things stand, for the failure message.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	storagetest.Eventually(t, timeout, what, func() error {
		if ok, state := cond(); !ok {
			return errors.New(state)
		}
		return nil
	})
}

// isRefused reports an error of a client whose connection was refused:
// the server was not (or no longer) listening, so nothing was accepted.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
