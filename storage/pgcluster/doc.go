// Package pgcluster finds or starts the PostgreSQL server seatd uses when
// no DATABASE_URL is given: 127.0.0.1:5432 when it answers, otherwise a
// private cluster under the data directory, initialised and started from
// the installed server binaries (as the postgres user when run as root) and
// adopted again by the next process on the same directory. It knows nothing
// of seatd's schema; storage owns that.
package pgcluster
