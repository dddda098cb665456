package storagetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// The tables of migrations/0001_init.sql.
var tables = []string{
	"organizations", "customers", "members", "subscriptions", "orders", "checkouts",
	"sessions", "seats", "invitations", "batches", "requests", "outbox", "schema_migrations",
}

func TestNewDatabaseIsMigratedAndIsolated(t *testing.T) {
	a, b := storagetest.NewDatabase(t), storagetest.NewDatabase(t)
	if a == b {
		t.Fatalf("two tests share %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	for _, c := range []*pgx.Conn{ca, cb} {
		for _, table := range tables {
			var n int
			if err := c.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatalf("table %s: %v", table, err)
			}
		}
	}
	if _, err := ca.Exec(t.Context(), "INSERT INTO organizations (id, name, slug) VALUES (gen_random_uuid(), 'Acme', 'acme')"); err != nil {
		t.Fatal(err)
	}
	count := func(c *pgx.Conn) (n int) {
		if err := c.QueryRow(t.Context(), "SELECT count(*) FROM organizations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if na, nb := count(ca), count(cb); na != 1 || nb != 0 {
		t.Fatalf("organizations: %d in the database written, %d in the other; want 1 and 0", na, nb)
	}
	// The template keeps every migration applied: Migrate finds nothing to do.
	if err := storage.Migrate(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

func TestNewDatabaseInParallel(t *testing.T) {
	for range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			begin := time.Now()
			url := storagetest.NewDatabase(t)
			t.Logf("NewDatabase took %v", time.Since(begin))
			var n int
			if err := connect(t, url).QueryRow(t.Context(), "SELECT count(*) FROM seats").Scan(&n); err != nil || n != 0 {
				t.Fatalf("seats: %d, %v", n, err)
			}
		})
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	var url string
	t.Run("", func(t *testing.T) { url = storagetest.NewDatabase(t) })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, url); err == nil {
		_ = c.Close(ctx) // failing anyway
		t.Fatalf("%s still exists after its test", url)
	}
}

func TestNewServerStopStartKeepsURLAndData(t *testing.T) {
	begin := time.Now()
	s := storagetest.NewServer(t)
	t.Logf("NewServer took %v", time.Since(begin))
	url := s.URL()
	conn := connect(t, url)
	if _, err := conn.Exec(t.Context(), "INSERT INTO organizations (id, name, slug) VALUES (gen_random_uuid(), 'Acme', 'acme')"); err != nil {
		t.Fatal(err)
	}
	// A pool opened before the outage, as seatd would hold.
	db, err := storage.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	begin = time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %v", time.Since(begin))
	if err := conn.Ping(t.Context()); err == nil {
		t.Fatal("connection still works after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop when stopped: %v", err)
	}
	begin = time.Now()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(begin))
	if s.URL() != url {
		t.Fatalf("URL changed across Stop/Start: %s, then %s", url, s.URL())
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	var slug string
	if err := connect(t, s.URL()).QueryRow(t.Context(), "SELECT slug FROM organizations").Scan(&slug); err != nil || slug != "acme" {
		t.Fatalf("after restarts: slug %q, %v", slug, err)
	}
	// The pool's old connections are dead: the first use may fail, with an
	// error worth retrying; then the pool reconnects.
	var n int
	err = db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM organizations").Scan(&n)
	if err != nil {
		if !storage.IsTransient(err) {
			t.Fatalf("error after restart is not transient: %v", err)
		}
		err = db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM organizations").Scan(&n)
	}
	if err != nil || n != 1 {
		t.Fatalf("pool after restart: %d, %v", n, err)
	}
}

func BenchmarkNewDatabase(b *testing.B) {
	storagetest.NewDatabase(b) // build the template outside the measurement
	for b.Loop() {
		storagetest.NewDatabase(b)
	}
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
