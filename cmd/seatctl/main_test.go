package main

import (
	"os"
	"testing"

	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) {
	// The test binary doubles as seatctl, for tests that measure the
	// command as a process of its own (see runProcess).
	if os.Getenv("SEATCTL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	storagetest.Main(m)
}
