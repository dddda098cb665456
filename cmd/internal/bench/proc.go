package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Processes, databases and memory: what a benchmark run sets up around the
// system under test.

// child is a process the benchmark started (a seatd role, or seatctl).
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{}
	peakKB  int64 // VmHWM, last read while running
	stopped bool  // stop was called: its exit is expected
}

// startChild runs path with args and exactly env, its output going to
// logPath.
func startChild(name, path string, env []string, logPath string, args ...string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, log: f, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close() // the child's log; nothing is buffered on our side
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended unasked, with why.
func (c *child) exited() error {
	if c.stopped {
		return nil
	}
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%s); last output:\n%s", c.name, c.cmd.ProcessState, tail(c.logPath, 3000))
	default:
		return nil
	}
}

// sample records the process's peak resident set so far (VmHWM), while it
// still runs.
func (c *child) sample() {
	select {
	case <-c.done:
		return
	default:
	}
	if kb, err := vmHWM(c.cmd.Process.Pid); err == nil && kb > c.peakKB {
		c.peakKB = kb
	}
}

// PeakRSSMB is the process's peak resident set in MiB: VmHWM sampled while
// it ran, or the kernel's figure for it once it has exited.
func (c *child) PeakRSSMB() float64 {
	kb := c.peakKB
	if st := c.cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > kb {
			kb = ru.Maxrss // KiB on Linux
		}
	}
	return float64(kb) / 1024
}

// stop asks the process to drain (SIGTERM) and kills it after timeout.
func (c *child) stop(timeout time.Duration) {
	c.sample()
	c.stopped = true
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// selfPeakRSSMB is this process's peak resident set in MiB.
func selfPeakRSSMB() float64 {
	kb, err := vmHWM(os.Getpid())
	if err != nil {
		return 0
	}
	return float64(kb) / 1024
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	if len(b) > n {
		b = append([]byte("…"), b[len(b)-n:]...)
	}
	return string(b)
}

// childEnv is this process's environment without anything that would
// point a child at another deployment, plus extra.
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

// freeAddr returns 127.0.0.1:PORT with a port nobody listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// FindSeatd returns the seatd binary: the one next to this executable, or
// one built from the module in the current directory into dir.
func FindSeatd(dir string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "seatd")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "seatd")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/seatd/seatd/cmd/seatd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("no seatd next to this executable, and building it failed (run from the repository, or pass --seatd PATH): %v: %s", err, out)
	}
	return bin, nil
}

// withDatabase returns dsn with its database replaced by name. dsn is a URL
// or a keyword/value string.
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path, u.RawPath = "/"+name, ""
			return u.String()
		}
	}
	return dsn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
}

// dropDatabase drops a benchmark's database, disconnecting whoever is left.
func dropDatabase(adminURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}
