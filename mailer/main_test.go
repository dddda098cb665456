package mailer

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

// The crash tests run the mailer in a child process, this test binary
// re-executed with childEnv set, so they can kill it with SIGKILL.
const (
	childEnv         = "SEATD_MAILER_TEST_CHILD"
	childDatabaseEnv = "SEATD_MAILER_TEST_DATABASE_URL"
	childNATSEnv     = "SEATD_MAILER_TEST_NATS_URL"
	childSMTPEnv     = "SEATD_MAILER_TEST_SMTP_URL"
	// childCrashAfterEnv=n kills the child once the server has accepted
	// its n-th message and the ledger has recorded the n-1 before it.
	childCrashAfterEnv = "SEATD_MAILER_TEST_CRASH_AFTER_SEND"
	// childConnectionsEnv is the child's SMTPConfig.Connections.
	childConnectionsEnv = "SEATD_MAILER_TEST_SMTP_CONNECTIONS"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	storagetest.Main(m)
}

// runChild runs a Mailer from the environment until SIGTERM.
func runChild() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	fail := func(err error) int {
		log.Error("child failed", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := storage.Open(ctx, os.Getenv(childDatabaseEnv))
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	nc, err := stream.Connect(os.Getenv(childNATSEnv), "mailer-test-child")
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	cfg, err := ParseSMTPURL(os.Getenv(childSMTPEnv))
	if err != nil {
		return fail(err)
	}
	if v := os.Getenv(childConnectionsEnv); v != "" {
		if cfg.Connections, err = strconv.Atoi(v); err != nil {
			return fail(err)
		}
	}
	sender, err := NewSMTPSender(cfg)
	if err != nil {
		return fail(err)
	}
	keys, err := secret.NewKeys(testSecret)
	if err != nil {
		return fail(err)
	}
	m := New(Config{
		DB: db, JS: js, Sender: sender, Keys: keys, PublicURL: testPublicURL, Log: log,
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second, FetchWait: time.Second,
	})
	if v := os.Getenv(childCrashAfterEnv); v != "" {
		after, err := strconv.Atoi(v)
		if err != nil {
			return fail(err)
		}
		// Die in the one window where a crash can duplicate an email: the
		// server has accepted it, the ledger does not know yet.
		var accepted atomic.Int64
		m.testHookAfterSend = func(msg *Message, err error) {
			if err != nil || accepted.Add(1) < int64(after) {
				return
			}
			// The messages accepted before this one are being recorded
			// meanwhile; wait for that, so that this one alone is in the
			// window.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				var sent int64
				if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM invitations WHERE delivery_state = 'sent'`).Scan(&sent); err == nil && sent >= int64(after-1) {
					break
				}
			}
			log.Info("killing myself after the server accepted the message", "accepted", after)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	if err := m.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// child is a mailer running in a child process.
type child struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// startChild runs a mailer process against the bundle's database, NATS and
// SMTP server.
func (b *bundle) startChild(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childEnv+"=1",
		childDatabaseEnv+"="+b.dbURL,
		childNATSEnv+"="+b.ns.ClientURL(),
		childSMTPEnv+"="+b.smtp.URL(),
	)
	cmd.Env = append(cmd.Env, env...)
	c := &child{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = c.kill() // only making sure it is gone: the test judged how it ended
		t.Logf("child %d output:\n%s", cmd.Process.Pid, c.out.String())
	})
	return c
}

// kill sends SIGKILL, waits for the process to be gone and returns how it
// ended.
func (c *child) kill() error {
	c.t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL) // fails only if it has exited already
	return c.wait(10 * time.Second)
}

// wait waits for the process to exit and returns how it ended.
func (c *child) wait(timeout time.Duration) error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.t.Fatalf("child %d still running after %v", c.cmd.Process.Pid, timeout)
		return nil
	}
}

// killedBySIGKILL reports whether err is the exit of a process killed by
// SIGKILL.
func killedBySIGKILL(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
