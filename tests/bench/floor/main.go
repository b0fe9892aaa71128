// Command floor is the lower bound of the benchmarks: a TLS HTTP/1.1 server
// that reads each request body, copies the request uid into a canned
// "allowed" AdmissionReview response and decodes nothing. Whatever a webhook
// costs above this is the cost of its decoding, policy and encoding.
//
// The apiserver rejects a response whose uid is not the request's, so even the
// floor echoes it, without decoding: the apiserver writes `"request":{"uid":"`
// within the first hundred bytes of every review, and the floor looks for
// exactly that in the first 512 bytes. (A body written in another key order,
// like the benchmark's validate body, gets an empty uid: the load generator
// does not check it.)
//
// GET /count answers how many reviews it has served (the end-to-end benchmark
// uses it to see that the apiserver calls it). With --mutate-response FILE it
// answers the mutate path with that canned AdmissionReview instead, "<UID>"
// replaced by the request's uid: the end-to-end benchmark replays
// dittofs-webhook's own answer this way, to tell the apiserver's cost of
// applying a patch from the webhook's cost of computing it.
//
//	floor --listen 127.0.0.1:9443 --tls-cert-file tls.crt --tls-key-file tls.key [--mutate-response FILE]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const maxBody = 7 << 20

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	uidKey  = []byte(`"request":{"uid":"`)
	head    = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	tail    = []byte(`","allowed":true}}`)

	// mutateHead and mutateTail, when set, answer the mutate path.
	mutateHead, mutateTail []byte
)

const mutatePath = "/mutate-apps-v1-statefulset"

var served atomic.Int64

func handle(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/count" {
		_, _ = w.Write([]byte(strconv.FormatInt(served.Load(), 10)))
		return
	}
	served.Add(1)
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxBody)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var uid []byte
	if b := buf.Bytes(); len(b) > 0 {
		if i := bytes.Index(b[:min(len(b), 512)], uidKey); i >= 0 {
			rest := b[i+len(uidKey):]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				uid = rest[:j]
			}
		}
	}
	h, t := head, tail
	if mutateHead != nil && r.URL.Path == mutatePath {
		h, t = mutateHead, mutateTail
	}
	out := make([]byte, 0, len(h)+len(uid)+len(t))
	out = append(append(append(out, h...), uid...), t...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func main() {
	listen := flag.String("listen", ":9443", "HTTPS address")
	certFile := flag.String("tls-cert-file", "tls.crt", "serving certificate")
	keyFile := flag.String("tls-key-file", "tls.key", "serving key")
	mutateResponse := flag.String("mutate-response", "", "canned AdmissionReview for the mutate path, with the uid written <UID>")
	flag.Parse()
	if *mutateResponse != "" {
		b, err := os.ReadFile(*mutateResponse)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(2)
		}
		var ok bool
		mutateHead, mutateTail, ok = bytes.Cut(bytes.TrimSpace(b), []byte("<UID>"))
		if !ok {
			fmt.Fprintln(os.Stderr, "floor: --mutate-response has no <UID>")
			os.Exit(2)
		}
	}

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Addr:              *listen,
		Handler:           http.HandlerFunc(handle),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		Protocols:         protocols,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS(*certFile, *keyFile) }()
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		os.Exit(1)
	}
}
