package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A broken template override stops seatd at start, naming the file,
// before it touches a database; SEATD_TEMPLATES is read like every setting.
func TestBrokenTemplatesStopStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(`{{define "page"}}{{.NoSuchField}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEATD_TEMPLATES", dir)
	m := NewMain()
	var out bytes.Buffer
	m.Out = &out
	if err := m.ParseFlags("ingress", []string{"--data-dir", t.TempDir(), "--database-url", "postgres://nobody@127.0.0.1:1/none"}); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SEATD_TEMPLATES") || !strings.Contains(err.Error(), "NoSuchField") {
		t.Fatalf("Run with a broken template: %v", err)
	}
	if !strings.Contains(out.String(), "SEATD_TEMPLATES") || !strings.Contains(out.String(), dir) {
		t.Errorf("the printed configuration does not show SEATD_TEMPLATES:\n%s", out.String())
	}
}
