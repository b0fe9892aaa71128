package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
)

// TestLogWriterFlushes: lines reach the output within the flush interval
// without a Close, and everything is there after Close.
func TestLogWriterFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	out, err := os.Create(path)
	must(t, err)
	defer out.Close()
	lw := newLogWriter(out)
	_, _ = lw.Write([]byte("one\n"))
	tests.Eventually(t, 2*time.Second, func() (string, bool) { s := readFile(path); return s, s == "one\n" })
	_, _ = lw.Write([]byte("two\n"))
	_ = lw.Close()
	_ = lw.Close() // idempotent
	if got := readFile(path); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
}
