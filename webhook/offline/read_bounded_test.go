package offline

import (
	"strings"
	"testing"
)

// TestReadBounded: an input of exactly the limit is read whole; one byte more
// is refused instead of read on (stdin or a file must not exhaust memory).
func TestReadBounded(t *testing.T) {
	if got, err := readBounded(strings.NewReader("abcd"), 4); err != nil || string(got) != "abcd" {
		t.Fatalf("at the limit: %q, %v", got, err)
	}
	if _, err := readBounded(strings.NewReader("abcde"), 4); err == nil {
		t.Fatal("over the limit: no error")
	}
}
