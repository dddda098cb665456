package worker_test

import (
	"testing"

	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// seatsPath is the Assign Seat API's path, as a client writes it.
const seatsPath = "/v1/customer-portal/seats"
