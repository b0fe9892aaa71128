package main

import (
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
)

// TestLogWriterFlushes: lines reach the output within the flush interval
// without a Close, and everything is there after Close.
func TestLogWriterFlushes(t *testing.T) {
	out := &syncWriter{}
	lw := newLogWriter(out)
	_, _ = lw.Write([]byte("one\n"))
	tests.Eventually(t, 2*time.Second, func() (string, bool) { s := out.read(); return s, s == "one\n" })
	_, _ = lw.Write([]byte("two\n"))
	_ = lw.Close()
	_ = lw.Close() // idempotent
	if got := out.read(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
}
