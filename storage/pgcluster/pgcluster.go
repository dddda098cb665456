package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoPostgres means there is no server to use and no PostgreSQL server
// binaries to start one with. Its message is one line meant for the operator.
var ErrNoPostgres = errors.New("no PostgreSQL server found: set DATABASE_URL, or install the PostgreSQL server (apt-get install postgresql)")

// localAddr is where a development machine or a CI job usually runs
// Postgres, with trust authentication for user postgres.
const localAddr = "127.0.0.1:5432"

// EnsureOptions tunes EnsureWith. The zero value is what seatd uses.
type EnsureOptions struct {
	// NoProbe skips looking for a server on 127.0.0.1:5432 and goes straight
	// to a private cluster, so tests can exercise that path on machines that
	// do run a server.
	NoProbe bool
	// Cluster tunes the private cluster, if one is started.
	Cluster Options
}

// Ensure finds a Postgres for seatd and returns the URL of database
// dbName on it, in this order:
//
//  1. url, when not empty (DATABASE_URL), as is; nothing is created.
//  2. A server answering on 127.0.0.1:5432 as user postgres without a
//     password; dbName is created there if missing.
//  3. A private cluster in dir, initialised on first use and started now;
//     stop shuts it down. When running as root, it runs as the postgres
//     system user.
//
// stop is never nil when err is nil, and is a no-op for 1 and 2. When no
// server can be found or started for lack of binaries, err is ErrNoPostgres.
func Ensure(ctx context.Context, url, dir, dbName string, log *slog.Logger) (dsn string, stop func() error, err error) {
	return EnsureWith(ctx, url, dir, dbName, log, EnsureOptions{})
}

// EnsureWith is Ensure with options.
func EnsureWith(ctx context.Context, url, dir, dbName string, log *slog.Logger, opts EnsureOptions) (dsn string, stop func() error, err error) {
	log = orDiscard(log)
	noop := func() error { return nil }
	if url != "" {
		return url, noop, nil
	}
	if !opts.NoProbe {
		admin := "postgres://postgres@" + localAddr + "/postgres?sslmode=disable"
		err := ping(ctx, admin, 2*time.Second)
		if err == nil {
			if err := CreateDatabase(ctx, admin, dbName); err != nil {
				return "", nil, err
			}
			log.Info("using the PostgreSQL server on "+localAddr, "database", dbName)
			return "postgres://postgres@" + localAddr + "/" + neturl.PathEscape(dbName) + "?sslmode=disable", noop, nil
		}
		// Anything else (nothing listening, a password required) means
		// that server is not ours to use: start our own on another port.
		log.Info("no usable PostgreSQL server on "+localAddr+", starting a private one", "reason", err)
	}
	c, err := New(dir, opts.Cluster, log)
	if err != nil {
		return "", nil, err
	}
	if err := c.Start(ctx); err != nil {
		return "", nil, err
	}
	if err := CreateDatabase(ctx, c.URL("postgres"), dbName); err != nil {
		_ = c.Stop()
		return "", nil, err
	}
	if c.Adopted {
		// Someone else's server (a running seatd, say, when this is
		// seatctl): use it, leave it running.
		return c.URL(dbName), noop, nil
	}
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			stopErr = c.Stop()
			// A fallback directory has a random name: nothing could ever
			// find and reuse it, so keeping it would only leak disk.
			if c.Fallback && stopErr == nil {
				stopErr = os.RemoveAll(c.Dir)
			}
		})
		return stopErr
	}
	return c.URL(dbName), stop, nil
}

// CreateDatabase creates database name on the server of adminURL unless it
// exists. Several processes may race to create it; all of them succeed.
func CreateDatabase(ctx context.Context, adminURL, name string) (err error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer func() {
		if cerr := conn.Close(context.Background()); cerr != nil && err == nil {
			err = fmt.Errorf("create database %s: close: %w", name, cerr)
		}
	}()
	// Looking first spares the server log an error on every start, and
	// works for a role that may connect but not create databases.
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || // duplicate_database
		// Two CREATE DATABASE racing can also trip the catalog's own index.
		pgErr.Code == "23505" && pgErr.ConstraintName == "pg_database_datname_index") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Options tunes a private cluster.
type Options struct {
	// Fast gives up durability for speed: initdb --no-sync, and fsync,
	// synchronous_commit and full_page_writes off. An OS crash can corrupt
	// such a cluster, so only throwaway test clusters set it.
	Fast bool
	// Port is the TCP port on 127.0.0.1. Zero picks a free port at the
	// first successful Start and keeps it for later ones.
	Port int
}

// Cluster is a private PostgreSQL cluster: a directory holding the data
// directory (data/), the server log (postgres.log) and the unix socket, and
// the server pg_ctl starts on it.
type Cluster struct {
	// Dir is where the cluster lives: the directory asked for, or, when the
	// postgres user could not reach that one, a directory under /tmp.
	Dir string
	// Fallback reports that Dir is such a directory under /tmp, created for
	// this Cluster; the caller removes it when done.
	Fallback bool

	opts Options
	bin  string              // directory of initdb, pg_ctl and postgres
	cred *syscall.Credential // whom to run them as; nil: as ourselves
	log  *slog.Logger

	mu      sync.Mutex
	port    int
	started bool // started once: the port is fixed from now on
	// Adopted reports that the last Start found the server already running
	// (another seatd or seatctl on the same data dir): it is not ours to stop.
	Adopted bool
}

// New finds the PostgreSQL binaries and prepares dir for a cluster;
// Start initialises the cluster on first use. It returns ErrNoPostgres when
// no binaries are installed.
func New(dir string, opts Options, log *slog.Logger) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// An existing cluster can only be started by the major version that
	// created it, so prefer that version when several are installed.
	version, _ := os.ReadFile(filepath.Join(dir, "data", "PG_VERSION"))
	bin, err := findPostgresBin(strings.TrimSpace(string(version)))
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, bin: bin, cred: cred, log: orDiscard(log), port: opts.Port, started: opts.Port != 0}
	if err := c.prepareDir(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// findPostgresBin returns the directory holding initdb, pg_ctl and postgres:
// the one of major version prefer if installed, else the one of pg_ctl on
// PATH, else the highest version under /usr/lib/postgresql (Debian and
// Ubuntu install there without putting anything on PATH).
func findPostgresBin(prefer string) (string, error) {
	var candidates []string
	if prefer != "" {
		candidates = append(candidates, filepath.Join("/usr/lib/postgresql", prefer, "bin"))
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// Resolve symlinks: initdb and postgres sit next to the real file.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(bin string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(bin)), 64)
		return v
	}
	sort.Slice(installed, func(i, j int) bool { return version(installed[i]) > version(installed[j]) })
	candidates = append(candidates, installed...)
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// postgresCredential returns whom to run PostgreSQL as: nil (ourselves)
// unless we are root, which initdb and postgres refuse to run as.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, which PostgreSQL refuses, and no postgres system user to run it as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// prepareDir creates the cluster directory and, when PostgreSQL runs as
// the postgres user, hands it over to that user.
func (c *Cluster) prepareDir(dir string) error {
	if c.cred == nil {
		c.Dir = dir
		return os.MkdirAll(dir, 0o700)
	}
	// Parents are created traversable, or postgres could not reach dir.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if !traversable(filepath.Dir(dir), c.cred) {
		// Typically a data directory under /root, or a test's 0700 temp
		// directory. Opening up someone's home is not ours to do: use a
		// directory the postgres user can reach instead.
		tmp, err := os.MkdirTemp("/tmp", "seatd-postgres-")
		if err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		c.log.Warn("the postgres user cannot reach the cluster directory; using a throwaway cluster under /tmp instead (set DATABASE_URL, or make the directory's parents traversable, to keep the data)",
			"dir", dir, "using", tmp)
		dir, c.Fallback = tmp, true
	} else if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	c.Dir = dir
	return os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid))
}

// traversable reports whether the user of cred may search every directory
// from dir up to the root.
func traversable(dir string, cred *syscall.Credential) bool {
	for {
		st, err := os.Stat(dir)
		if err != nil {
			return false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return true // cannot tell: let initdb say
		}
		perm := st.Mode().Perm()
		var x fs.FileMode = 0o001
		if sys.Uid == cred.Uid {
			x = 0o100
		} else if sys.Gid == cred.Gid || contains(cred.Groups, sys.Gid) {
			x = 0o010
		}
		if perm&x == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (c *Cluster) dataDir() string { return filepath.Join(c.Dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.Dir, "postgres.log") }

// Port is the cluster's TCP port on 127.0.0.1, or 0 before the first Start.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// URL is the URL of database dbName on the cluster, as user postgres.
func (c *Cluster) URL(dbName string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port(), neturl.PathEscape(dbName))
}

// Start initialises the cluster if needed and starts it, waiting until it
// accepts connections. A server already running on the cluster (left by a
// process that crashed) is adopted rather than started twice.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The file lock keeps two processes sharing dir from running initdb or
	// pg_ctl start at the same time.
	unlock, err := lockFile(filepath.Join(c.Dir, "seatd.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.initdb(ctx); err != nil {
		return err
	}
	ok, err := c.adopt(ctx)
	c.Adopted = ok
	if ok || err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if !c.started {
			port, err := freePort()
			if err != nil {
				return err
			}
			c.port = port
		}
		if err := c.writeSettings(); err != nil {
			return err
		}
		begin := time.Now()
		out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "120", "-D", c.dataDir(), "-l", c.logFile())
		if err == nil {
			c.started = true
			c.log.Info("started PostgreSQL", "dir", c.Dir, "port", c.port, "took", time.Since(begin).Round(time.Millisecond))
			return nil
		}
		tail := c.logTail()
		// A free port found now can be taken by someone else before
		// postgres binds it; pick another unless the port is promised.
		if !c.started && attempt < 3 && strings.Contains(tail, "could not bind") {
			continue
		}
		return fmt.Errorf("start PostgreSQL in %s: %w: %s\n%s", c.Dir, err, strings.TrimSpace(string(out)), tail)
	}
}

// initdb creates the cluster unless dir already holds one.
func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	args := []string{"-D", c.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8"}
	if c.opts.Fast {
		args = append(args, "--no-sync")
	}
	// C.UTF-8 sorts like C but lower() and upper() know non-ASCII letters,
	// which the case-insensitive email indexes rely on. Older systems lack
	// it; C is the fallback every system has.
	out, err := c.run(ctx, "initdb", append(args, "--locale=C.UTF-8")...)
	if err != nil && strings.Contains(string(out), "invalid locale name") {
		out, err = c.run(ctx, "initdb", append(args, "--locale=C")...)
	}
	if err != nil {
		return fmt.Errorf("initdb in %s: %w: %s", c.Dir, err, strings.TrimSpace(string(out)))
	}
	// Our settings live in a file rewritten at each Start (the port may
	// change); postgresql.conf stays the operator's.
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, "\n# Settings of seatd, rewritten at each start.\ninclude_if_exists = 'seatd.conf'\n")
	if err := errors.Join(err, f.Close()); err != nil {
		return err
	}
	c.log.Info("initialised a PostgreSQL cluster", "dir", c.Dir)
	return nil
}

// writeSettings writes data/seatd.conf for the next start.
func (c *Cluster) writeSettings() error {
	settings := [][2]string{
		{"listen_addresses", "'127.0.0.1'"},
		{"port", strconv.Itoa(c.port)},
		// The socket goes in our directory, not /var/run/postgresql which
		// belongs to the system's server (and may not exist). A socket path
		// has to fit in sockaddr_un: past that, TCP only.
		{"unix_socket_directories", "''"},
	}
	if len(c.Dir)+len("/.s.PGSQL.65535") < 108 {
		settings[2][1] = quoteSetting(c.Dir)
	}
	if c.opts.Fast {
		settings = append(settings, [][2]string{{"fsync", "off"}, {"synchronous_commit", "off"}, {"full_page_writes", "off"}}...)
	}
	var b strings.Builder
	b.WriteString("# Written by seatd at each start: edit postgresql.conf instead.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = %s\n", s[0], s[1])
	}
	path := filepath.Join(c.dataDir(), "seatd.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return c.chown(path)
}

func quoteSetting(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// adopt looks at data/postmaster.pid for a server already running on the
// cluster, typically left by a seatd that crashed (pg_ctl detaches the
// server, so it outlives us). It reports true if that server is usable and
// now ours. A server that does not answer is stopped, and a pid file naming
// another process (the pid was reused after a reboot) is removed, so that
// Start can start afresh.
func (c *Cluster) adopt(ctx context.Context) (bool, error) {
	pid, port, err := c.readPidFile()
	if err != nil {
		return false, nil // no pid file: not running
	}
	if !isPostgresProcess(pid) {
		c.log.Warn("removing a stale postmaster.pid", "dir", c.Dir, "pid", pid)
		err := os.Remove(filepath.Join(c.dataDir(), "postmaster.pid"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		return false, nil
	}
	if port != 0 && (!c.started || port == c.port) {
		// It may still be starting, or recovering: give it a moment.
		url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := ping(ctx, url, 2*time.Second)
			if err == nil {
				c.port, c.started = port, true
				c.log.Info("reusing the PostgreSQL server already running on the cluster", "dir", c.Dir, "pid", pid, "port", port)
				return true, nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.log.Warn("stopping a PostgreSQL server of the cluster that does not answer", "dir", c.Dir, "pid", pid, "port", port)
	if out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", c.dataDir()); err != nil {
		return false, fmt.Errorf("stop PostgreSQL in %s: %w: %s", c.Dir, err, strings.TrimSpace(string(out)))
	}
	return false, nil
}

// readPidFile returns the pid and the port recorded in postmaster.pid.
func (c *Cluster) readPidFile() (pid, port int, err error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, 0, err
	}
	// Line 1 is the pid, line 4 the port (see pidfile.h).
	lines := strings.Split(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("postmaster.pid: bad pid %q", lines[0])
	}
	if len(lines) > 3 {
		port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pid, port, nil
}

// isPostgresProcess reports whether pid is alive and, where /proc tells, a
// postgres process.
func isPostgresProcess(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true // no /proc: trust the pid
	}
	name := strings.TrimSpace(string(comm))
	return name == "postgres" || name == "postmaster"
}

// Stop shuts the server down (fast: open sessions are disconnected) and
// waits until it has exited. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pid, _, err := c.readPidFile()
	if err != nil || !isPostgresProcess(pid) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", c.dataDir())
	if err != nil && isPostgresProcess(pid) {
		return fmt.Errorf("stop PostgreSQL in %s: %w: %s", c.Dir, err, strings.TrimSpace(string(out)))
	}
	c.log.Info("stopped PostgreSQL", "dir", c.Dir)
	return nil
}

// run runs one of the PostgreSQL programs as the user PostgreSQL runs as.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	// The postgres user may not be able to enter our working directory.
	cmd.Dir = c.Dir
	// PGDATA, PGPORT and friends are meant for some other server.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl start sends the server's output to -l, so the server does not
	// hold these pipes open after pg_ctl exits.
	return cmd.CombinedOutput()
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// logTail returns the end of the server log, for errors.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// lockFile takes an exclusive flock on path, creating it, until unlock.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close() // never written
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the descriptor releases the lock; the file holds no data.
	return func() { _ = f.Close() }, nil
}

// freePort returns a TCP port on 127.0.0.1 that nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	// The port must be free when we return it.
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// ping connects to url and disconnects, within timeout.
func ping(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
