// Package storagetest gives tests a real PostgreSQL database.
//
// A package's TestMain calls Main, which finds or starts a server once per
// test binary; each test then calls NewDatabase for a database of its own,
// migrated and dropped after the test. Fault tests that stop and restart
// Postgres use NewServer for a server of their own.
package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/pgcluster"
)

var (
	// adminURL is set by Main: the database the other helpers connect to
	// to create and drop databases.
	adminURL string

	adminMu   sync.Mutex
	adminPool *pgxpool.Pool

	templateMu    sync.Mutex
	templateReady string

	// servers are the clusters of NewServer still running, with their
	// directories, for Main to stop when the tests are interrupted.
	serversMu sync.Mutex
	servers   = map[*pgcluster.Cluster]string{}
)

// Main is called from TestMain. It finds or starts Postgres: the server of
// DATABASE_URL if set, else one on 127.0.0.1:5432, else a private cluster
// in a temporary directory, which it stops after the tests. Then it runs
// the tests and exits. Without any of those it prints one line and exits 1.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reapAbandoned(log)
	dir, release, err := newClusterDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storagetest:", err)
		return 1
	}
	defer release()
	defer removeAll(log, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	// Databases are created from the server's maintenance database.
	// Durability is pointless for test data; speed is not.
	u, stop, err := pgcluster.EnsureWith(ctx, os.Getenv("DATABASE_URL"), dir, "postgres", log,
		pgcluster.EnsureOptions{Cluster: pgcluster.Options{Fast: true}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			log.Warn("storagetest: stopping postgres", "err", err)
		}
	}()
	// pg_ctl detaches the server from us: an interrupted test run must stop
	// it itself (reapAbandoned catches the runs killed outright).
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		if err := stop(); err != nil {
			log.Warn("storagetest: stopping postgres", "err", err)
		}
		removeAll(log, dir)
		serversMu.Lock()
		for c, dir := range servers {
			if err := c.Stop(); err != nil {
				log.Warn("storagetest: stopping a test's postgres", "dir", c.Dir, "err", err)
			}
			removeAll(log, c.Dir)
			removeAll(log, dir)
		}
		os.Exit(1)
	}()
	adminURL = u
	code := m.Run()
	adminMu.Lock()
	if adminPool != nil {
		adminPool.Close()
	}
	adminMu.Unlock()
	return code
}

// AdminURL returns the URL of the server's maintenance database (the one of
// DATABASE_URL when set). Tests may connect to it but must leave it as is.
func AdminURL() string { return adminURL }

// NewDatabase returns the URL of a fresh database for this test, with every
// migration applied, and drops it after the test.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tpl, err := template(ctx)
	if err != nil {
		t.Fatalf("storagetest: template database: %v", err)
	}
	return newDatabase(ctx, t, tpl)
}

// NewEmptyDatabase is NewDatabase without the migrations, for tests of
// Migrate itself.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return newDatabase(ctx, t, "template0")
}

func newDatabase(ctx context.Context, t testing.TB, tpl string) string {
	t.Helper()
	pool, err := admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Test binaries of several packages share the server: the name has to
	// be unique across processes, not just within this one.
	name := "seatd_test_" + randomSuffix()
	if err := cloneDatabase(ctx, pool, name, tpl); err != nil {
		t.Fatalf("storagetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE: a pool the test forgot to close must not keep it alive.
		if _, err := pool.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("storagetest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(adminURL, name)
}

// cloneDatabase creates name as a copy of tpl. Postgres refuses to copy a
// database somebody is connected to; the template takes no connections,
// but a backend that just disconnected may still be on its way out.
func cloneDatabase(ctx context.Context, pool *pgxpool.Pool, name, tpl string) error {
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl))
		if !inUse(err) || attempt == 20 {
			return err
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

// templateLock is the advisory lock key (in the maintenance database)
// under which a test process builds a template database.
const templateLock = 0x5ea7d7e5

// template returns the name of the template database of the current
// migrations, building it if this is the first process to need it.
//
// The template is named from the migrations' fingerprint, so changed
// migrations get a new one, and published by renaming a complete build: a
// database with that name is ready to clone. It takes no connections, so
// clones never find it busy.
func template(ctx context.Context) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if templateReady != "" {
		return templateReady, nil
	}
	pool, err := admin(ctx)
	if err != nil {
		return "", err
	}
	name := "seatd_tpl_" + storage.MigrationsFingerprint()
	exists := func(q pgxQuerier) (bool, error) {
		var ok bool
		err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
		return ok, err
	}
	if ok, err := exists(pool); ok || err != nil {
		if ok {
			templateReady = name
		}
		return templateReady, err
	}

	// Other test binaries (go test ./... runs packages in parallel) may be
	// here too: one builds while the others wait, then find it built.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLock) //nolint:errcheck
	if ok, err := exists(conn); ok || err != nil {
		if ok {
			templateReady = name
		}
		return templateReady, err
	}
	// Builds left by processes killed mid-way; none is in progress, since
	// we hold the lock.
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'seatd\\_tplbuild\\_%'")
	if err != nil {
		return "", err
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, db := range stale {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(db)+" IS_TEMPLATE false"); err != nil {
			return "", err
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(db)+" WITH (FORCE)"); err != nil {
			return "", err
		}
	}

	build := "seatd_tplbuild_" + randomSuffix()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(build)+" TEMPLATE template0"); err != nil {
		return "", err
	}
	if err := storage.Migrate(ctx, withDatabase(adminURL, build)); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(build)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	// Migrate has disconnected, but its backend may not have exited yet.
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(build)+" RENAME TO "+ident(name))
		if err == nil {
			break
		}
		if !inUse(err) || attempt == 50 {
			return "", err
		}
		time.Sleep(20 * time.Millisecond)
	}
	templateReady = name
	return name, nil
}

type pgxQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// admin returns the pool on the maintenance database, opening it once.
func admin(ctx context.Context) (*pgxpool.Pool, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminURL == "" {
		return nil, errors.New("storagetest: no server: call storagetest.Main from TestMain")
	}
	if adminPool == nil {
		pool, err := pgxpool.New(ctx, adminURL)
		if err != nil {
			return nil, fmt.Errorf("storagetest: %w", err)
		}
		adminPool = pool
	}
	return adminPool, nil
}

// inUse reports the error of a database that has other sessions.
func inUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006" // object_in_use
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// withDatabase returns dsn with its database replaced by name. dsn is a URL
// or a keyword/value string.
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path, u.RawPath = "/"+name, ""
			return u.String()
		}
	}
	// The last of repeated keywords wins.
	return dsn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
}

// Server is a private PostgreSQL server for one test, which the test may
// stop and start. Its URL stays the same throughout.
type Server struct {
	cluster *pgcluster.Cluster
	url     string
}

// NewServer starts a private PostgreSQL cluster just for this test, with
// the migrated schema in database "seatd", and stops it after the test. It
// skips the test when no PostgreSQL server binaries are installed.
func NewServer(t testing.TB) *Server {
	t.Helper()
	dir, release, err := newClusterDir()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	c, err := pgcluster.New(dir, pgcluster.Options{Fast: true}, log)
	if err != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			t.Error(rerr)
		}
		release()
		if errors.Is(err, pgcluster.ErrNoPostgres) {
			t.Skip("storagetest.NewServer: no PostgreSQL server binaries (initdb, pg_ctl) installed: apt-get install postgresql")
		}
		t.Fatal(err)
	}
	serversMu.Lock()
	servers[c] = dir
	serversMu.Unlock()
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		serversMu.Lock()
		delete(servers, c)
		serversMu.Unlock()
		for _, d := range []string{c.Dir, dir} { // c.Dir is dir, unless the cluster fell back to another
			if err := os.RemoveAll(d); err != nil {
				t.Error(err)
			}
		}
		release()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pgcluster.CreateDatabase(ctx, c.URL("postgres"), "seatd"); err != nil {
		t.Fatal(err)
	}
	s := &Server{cluster: c, url: c.URL("seatd")}
	if err := storage.Migrate(ctx, s.url); err != nil {
		t.Fatal(err)
	}
	return s
}

// URL is the URL of database "seatd" on the server.
func (s *Server) URL() string { return s.url }

// Stop shuts the server down, disconnecting every session, and waits until
// it has exited. Stopping a stopped server does nothing.
func (s *Server) Stop() error { return s.cluster.Stop() }

// Start starts the server again, on the same port, and waits until it
// accepts connections.
func (s *Server) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return s.cluster.Start(ctx)
}

// Restart stops the server and starts it again.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Test clusters live in temporary directories named with clusterDirPrefix,
// each with an owner.lock file flocked by the process using it.
const clusterDirPrefix = "seatd-test-pg-"

// newClusterDir creates a temporary directory for a cluster, owned by this
// process until release.
func newClusterDir() (dir string, release func(), err error) {
	dir, err = os.MkdirTemp("", clusterDirPrefix)
	if err != nil {
		return "", nil, err
	}
	// Lock under another name and rename: reapAbandoned only ever sees an
	// owner.lock that is already locked.
	tmp := filepath.Join(dir, "owner.lock.new")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, "owner.lock"))
		}
		if err != nil {
			_ = f.Close() // never written
		}
	}
	if err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(dir))
	}
	// Closing the descriptor releases the lock; the file holds no data.
	return dir, func() { _ = f.Close() }, nil
}

// reapAbandoned stops the clusters of test processes that died without
// cleaning up (killed, or timed out): pg_ctl detaches the server, so it
// would run on forever. Their owner.lock is no longer locked.
func reapAbandoned(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, "owner.lock"))
		if err != nil {
			continue // being set up right now, or not ours to touch
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if c, err := pgcluster.New(dir, pgcluster.Options{}, log); err == nil {
				if err := c.Stop(); err != nil {
					log.Warn("abandoned test cluster", "dir", dir, "err", err)
				}
				if c.Fallback {
					removeAll(log, c.Dir)
				}
			}
			removeAll(log, dir)
		}
		_ = f.Close() // opened read-only, only to test the lock
	}
}

// removeAll removes a cluster directory, and warns when it cannot: each
// one left behind holds a whole cluster's files in the temporary directory.
func removeAll(log *slog.Logger, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("storagetest: removing a cluster directory", "dir", dir, "err", err)
	}
}

// Eventually polls cond every 10ms until it returns nil, and fails the test
// after timeout with what was awaited and cond's last word on where things
// stand. It is the one polling loop of seatd's tests.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pool provisions a subscription or an order (kind) of seats for a test
// that needs a pool but no particular product: a new product named
// product, of the customer's organization (monthly for a subscription,
// one-time for an order), and the pool of it. It returns the pool's id.
func Pool(t testing.TB, db *storage.DB, kind, customerID, product string, seats int, status string) string {
	t.Helper()
	ctx := context.Background()
	var org string
	if err := db.Pool.QueryRow(ctx, `SELECT organization_id FROM customers WHERE id = $1`, customerID).Scan(&org); err != nil {
		t.Fatalf("storagetest: customer %s: %v", customerID, err)
	}
	spec := storage.ProductSpec{OrganizationID: org, Name: product}
	if kind == "subscription" {
		spec.RecurringInterval = "month"
	}
	prod, err := db.CreateProduct(ctx, spec)
	if err != nil {
		t.Fatalf("storagetest: product %q: %v", product, err)
	}
	id, err := db.CreatePool(ctx, storage.PoolSpec{Kind: kind, CustomerID: customerID, ProductID: prod.ID, Seats: seats, Status: status})
	if err != nil {
		t.Fatalf("storagetest: %s of %q: %v", kind, product, err)
	}
	return id
}
