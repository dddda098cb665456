package pgcluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/storage/pgcluster"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

func TestEnsurePostgresExplicitURL(t *testing.T) {
	const url = "postgres://example.invalid/seatd"
	dsn, stop, err := pgcluster.Ensure(t.Context(), url, t.TempDir(), "seatd", nil)
	if err != nil || dsn != url {
		t.Fatalf("EnsurePostgres = %q, %v; want %q", dsn, err, url)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestErrNoPostgresIsOneLine(t *testing.T) {
	msg := pgcluster.ErrNoPostgres.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "DATABASE_URL") {
		t.Fatalf("ErrNoPostgres = %q", msg)
	}
}

// TestEnsurePostgresPrivateCluster skips the 127.0.0.1:5432 probe, so it
// starts a private cluster even where a server runs there.
func TestEnsurePostgresPrivateCluster(t *testing.T) {
	// A directory the postgres user can reach when we are root (t.TempDir's
	// parent is 0700), so that restarts find the same cluster.
	parent, err := os.MkdirTemp("", "seatd-ensure-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(parent); err != nil {
			t.Error(err)
		}
	})
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "postgres")
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	opts := pgcluster.EnsureOptions{NoProbe: true, Cluster: pgcluster.Options{Fast: true}}
	ensure := func() (string, func() error) {
		t.Helper()
		begin := time.Now()
		dsn, stop, err := pgcluster.EnsureWith(t.Context(), "", dir, "seatd", log, opts)
		if errors.Is(err, pgcluster.ErrNoPostgres) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // stop is idempotent: the test stops most clusters itself
			if err := stop(); err != nil {
				t.Error(err)
			}
		})
		t.Logf("EnsurePostgres took %v: %s", time.Since(begin), dsn)
		return dsn, stop
	}

	dsn, stop := ensure()
	if strings.Contains(dsn, ":5432/") {
		t.Fatalf("private cluster on the default port: %s", dsn)
	}
	conn := connect(t, dsn)
	var db string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != "seatd" {
		t.Fatalf("current_database() = %q, %v", db, err)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A second process on the same data dir (seatctl beside a running
	// seatd, or a seatd after a crash) adopts the running server, and its
	// stop leaves the server to its owner.
	dsn2, stop2 := ensure()
	if dsn2 != dsn {
		t.Fatalf("second EnsurePostgres = %s, want the running server %s", dsn2, dsn)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if got := readKept(t, dsn2); got != "hello" {
		t.Fatalf("kept after the adopter's stop = %q", got)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		_ = c.Close(ctx) // failing anyway
		t.Fatal("server still answers after stop()")
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop(): %v", err)
	}

	// Started again, the cluster is reused, data and all.
	dsn3, stop3 := ensure()
	if got := readKept(t, dsn3); got != "hello" {
		t.Fatalf("kept after restart = %q", got)
	}
	if err := stop3(); err != nil {
		t.Fatal(err)
	}
}

func TestClusterFallsBackWhenUnreachable(t *testing.T) {
	// t.TempDir's parent is 0700 and owned by us: only root needs to fall
	// back, since only root runs PostgreSQL as another user.
	dir := filepath.Join(t.TempDir(), "postgres")
	c, err := pgcluster.New(dir, pgcluster.Options{}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if errors.Is(err, pgcluster.ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.Fallback {
		t.Cleanup(func() {
			if err := os.RemoveAll(c.Dir); err != nil {
				t.Error(err)
			}
		})
	}
	if root := os.Geteuid() == 0; c.Fallback != root || (c.Dir == dir) == root {
		t.Fatalf("root=%v: Dir=%s Fallback=%v", root, c.Dir, c.Fallback)
	}
	if c.Fallback && !strings.HasPrefix(c.Dir, "/tmp/") {
		t.Fatalf("fallback dir %s not under /tmp", c.Dir)
	}
}

func readKept(t *testing.T, dsn string) string {
	t.Helper()
	var v string
	if err := connect(t, dsn).QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return conn
}
