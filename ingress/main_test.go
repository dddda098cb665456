package ingress_test

import (
	"testing"

	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }
