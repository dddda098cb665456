package telemetry

import (
	"io"
	"log/slog"
	"os"
)

// NewLogger returns seatd's logger writing to w at level: JSON lines when w
// is not a terminal (a container, a file, a pipe into a log shipper), text
// when a person is watching. Every line about one request carries its
// request_id, in whichever process it is written.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if IsTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// IsTerminal reports whether w is a character device such as a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
