package main

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogWriterFlushes: lines reach the output within the flush interval
// without a Close, and everything is there after Close.
func TestLogWriterFlushes(t *testing.T) {
	var out lockedBuffer
	lw := newLogWriter(&out)
	_, _ = lw.Write([]byte("one\n"))
	deadline := time.Now().Add(2 * time.Second)
	for out.String() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed within 2 s: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _ = lw.Write([]byte("two\n"))
	_ = lw.Close()
	_ = lw.Close() // idempotent
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Close: %q", got)
	}
}
