package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/seatd/seatd/storage/storagetest"
)

// The tests in this package run seatd as real child processes, built once
// per test binary, and break things around them: kill -9, restarts of NATS
// and Postgres, signals.
func TestMain(m *testing.M) { storagetest.Main(m) }

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	// buildLock stays open (and flocked) for the life of the test binary:
	// it tells reapBuilds that the directory is in use.
	buildLock *os.File
)

// buildDirPrefix names the temporary directories the binary is built in.
// storagetest.Main exits the process itself, so nothing can remove the
// directory after the tests: the next run removes those whose owner is gone.
const buildDirPrefix = "seatd-proctest-bin-"

// seatdBinary builds ./cmd/seatd once (without -race: the children only
// need to be fast) and returns the path of the binary.
func seatdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building seatd: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	reapBuilds()
	dir, err := os.MkdirTemp("", buildDirPrefix)
	if err != nil {
		return "", err
	}
	// Locked under another name, then renamed: reapBuilds only ever sees
	// an owner.lock that is already locked.
	tmp := filepath.Join(dir, "owner.lock.new")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			err = os.Rename(tmp, filepath.Join(dir, "owner.lock"))
		}
	}
	if err != nil {
		return "", errors.Join(err, os.RemoveAll(dir))
	}
	buildLock = f
	// The go command that runs this test sets GOROOT for it.
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(dir, "seatd")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return bin, nil
}

// reapBuilds removes the build directories of test binaries that have
// exited.
func reapBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, "owner.lock"))
		if err != nil {
			continue // being set up right now
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(dir) // what is left, the next run's reapBuilds tries again
		}
		_ = f.Close() // opened read-only, only to test the lock
	}
}
