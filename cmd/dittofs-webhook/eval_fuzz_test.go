package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

// FuzzEval feeds arbitrary input to `eval -f -`: it never panics, always
// exits 0, 1 or 2, prints nothing on stdout when the input is unreadable
// (2), and evaluating its own output again changes nothing.
func FuzzEval(f *testing.F) {
	// The inputs of the CLI cases (not their expected outputs).
	scripts, _ := filepath.Glob(filepath.Join(scriptsDir, "*.txtar"))
	for _, p := range scripts {
		ar, err := txtar.ParseFile(p)
		must(f, err)
		for _, file := range ar.Files {
			if ext := filepath.Ext(file.Name); ext == ".yaml" || ext == ".yml" || ext == ".json" {
				f.Add(file.Data)
			}
		}
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: List\nitems: [1]\n"))
	f.Add([]byte("{\"kind\":\"StatefulSet\",\"apiVersion\":\"apps/v1\",\"metadata\":{\"labels\":{\"dittofs.com/server\":\"\"}}}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out, errOut bytes.Buffer
		code := run([]string{"eval", "-f", "-"}, bytes.NewReader(in), &out, &errOut)
		switch code {
		case 0, 1:
		case 2:
			if out.Len() != 0 {
				t.Fatalf("exit 2 with output on stdout: %q", out.String())
			}
			return
		default:
			t.Fatalf("exit %d", code)
		}
		var out2, err2 bytes.Buffer
		code2 := run([]string{"eval", "-f", "-"}, bytes.NewReader(out.Bytes()), &out2, &err2)
		if code2 == 2 {
			t.Fatalf("eval cannot read its own output (exit 2: %s)\ninput %q\noutput %q",
				err2.String(), in, out.String())
		}
		if code == 0 && !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("eval of its own output differs\nfirst  %q\nsecond %q", out.String(), out2.String())
		}
	})
}
