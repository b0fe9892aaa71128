package main

import (
	"bytes"
	"testing"
	"time"
)

// read returns what a syncWriter over a bytes.Buffer holds.
func (w *syncWriter) read() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.(*bytes.Buffer).String()
}

// TestLogWriterFlushes: lines reach the output within the flush interval
// without a Close, and everything is there after Close.
func TestLogWriterFlushes(t *testing.T) {
	out := &syncWriter{w: &bytes.Buffer{}}
	lw := newLogWriter(out)
	_, _ = lw.Write([]byte("one\n"))
	deadline := time.Now().Add(2 * time.Second)
	for out.read() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed within 2 s: %q", out.read())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _ = lw.Write([]byte("two\n"))
	_ = lw.Close()
	_ = lw.Close() // idempotent
	if got := out.read(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
}
