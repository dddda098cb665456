package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/ingress/importer"
	"github.com/seatd/seatd/storage/storagetest"
)

// writeRows writes a CSV of n seats: half claimed at once, half invited,
// every tenth with metadata.
func writeRows(t testing.TB, dir string, n int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("seats-%d.csv", n))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A failed write sticks to w, and Flush reports it.
	w := bufio.NewWriter(f)
	_, _ = fmt.Fprintln(w, "email,immediate_claim,metadata")
	for i := range n {
		meta := ""
		if i%10 == 0 {
			meta = fmt.Sprintf(`"{""row"": %d, ""team"": ""import""}"`, i)
		}
		_, _ = fmt.Fprintf(w, "user%07d@example.com,%v,%s\n", i, i%2 == 0, meta)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// heapPeak samples the process's heap until stopped and returns the
// largest HeapInuse seen, in MiB.
func heapPeak() (stop func() float64) {
	var (
		mu   sync.Mutex
		peak uint64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		mu.Lock()
		peak = max(peak, m.HeapInuse)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() float64 {
		close(done)
		wg.Wait()
		sample()
		return float64(peak) / (1 << 20)
	}
}

// BenchmarkImport imports 10,000 rows through the whole pipeline (parse,
// publish, worker, Postgres) into a fresh subscription per iteration. The
// peak heap is the whole test process's: the import, the embedded NATS
// server, the worker and the relay.
//
//	go test -run '^$' -bench Import -benchtime 3x ./cmd/seatctl/
func BenchmarkImport(b *testing.B) {
	const rows = 10_000
	ie := setupImport(b, seatdtest.Options{}, 1)
	path := writeRows(b, ie.dir, rows)
	ctx := context.Background()
	stop := heapPeak()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sub := storagetest.Pool(b, ie.DB, "subscription", ie.ten.CustomerID, "Seats", rows, "active")
		b.StartTimer()
		res := ie.seatctl(b, ctx, "", "import", "--subscription", sub, path)
		if res.err != nil || res.sum.Succeeded != rows {
			b.Fatalf("import: %v %+v\n%s", res.err, res.sum, res.stderr)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(stop(), "peak-heap-MiB")
}

// TestImportLarge is opt-in: SEATCTL_IMPORT_ROWS=100000 imports that many
// rows, with seatctl as a process of its own so that its memory can be
// told apart from the pipeline's.
//
//	SEATCTL_IMPORT_ROWS=100000 go test -run ImportLarge -v -timeout 30m ./cmd/seatctl/
func TestImportLarge(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SEATCTL_IMPORT_ROWS"))
	if n <= 0 {
		t.Skip("set SEATCTL_IMPORT_ROWS (e.g. 100000) to run")
	}
	ie := setupImport(t, seatdtest.Options{Workers: 2}, n)
	path := writeRows(t, ie.dir, n)
	report := filepath.Join(ie.dir, "report.csv")
	stop := heapPeak()

	cmd := exec.CommandContext(t.Context(), os.Args[0], "import", "--subscription", ie.ten.SubscriptionID,
		"--timeout", "30m", "--report", report, path)
	cmd.Env = append(os.Environ(), "SEATCTL_TEST_MAIN=1") // and the setupImport environment
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	pipelineHeap := stop()
	if err != nil {
		t.Fatalf("seatctl import: %v\n%s", err, stderr.String())
	}
	var sum importer.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout.String())
	}
	if sum.Succeeded != n || sum.Published != n {
		t.Errorf("summary %+v", sum)
	}
	if got := ie.count(t, `SELECT count(*) FROM seats WHERE subscription_id = $1`, ie.ten.SubscriptionID); got != n {
		t.Errorf("%d seats, want %d", got, n)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	t.Logf("%d rows in %s: %.0f rows/s; seatctl max RSS %.1f MiB; test process (NATS, worker, relay) peak heap %.1f MiB",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(rss)/1024, pipelineHeap)
}
