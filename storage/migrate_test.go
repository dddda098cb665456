package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

func TestMigrateConcurrently(t *testing.T) {
	url := storagetest.NewEmptyDatabase(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = storage.Migrate(ctx, url) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	rows, _ := conn.Query(ctx, "SELECT version, name FROM schema_migrations ORDER BY version")
	type applied struct {
		Version int
		Name    string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[applied])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) {
		t.Fatalf("schema_migrations has %d rows, want one per migration (%d): %v", len(got), len(files), got)
	}
	for i, f := range files {
		name := filepath.Base(f)
		v, _ := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if got[i] != (applied{v, name}) {
			t.Errorf("schema_migrations row %d = %v, want %v", i, got[i], applied{v, name})
		}
	}
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'seats'").Scan(&tables); err != nil || tables != 1 {
		t.Fatalf("seats table: %d, %v", tables, err)
	}
}
