// Command floor is the lower bound of the benchmarks: a TLS HTTP/1.1 server
// that reads each body and answers a canned "allowed" AdmissionReview,
// decoding nothing. The apiserver rejects an answer for another uid, so it
// copies the one after `"request":{"uid":"`, which the apiserver writes in the
// first bytes (the validate body, in another key order, gets an empty uid: the
// load generator does not check it). With --mutate-response FILE it answers
// the mutate path with that AdmissionReview, "<UID>" replaced by the request's
// uid: e2ebench replays dittofs-webhook's answer so, to tell the apiserver's
// cost of applying a patch from the webhook's of computing it.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	uidKey  = []byte(`"request":{"uid":"`)
	// The answer is head, the uid, tail (on the mutate path, with
	// --mutate-response: mutateHead, the uid, mutateTail).
	head                   = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	tail                   = []byte(`","allowed":true}}`)
	mutateHead, mutateTail []byte
)

func handle(w http.ResponseWriter, r *http.Request) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 7<<20)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, uid := buf.Bytes(), []byte(nil)
	if i := bytes.Index(b[:min(len(b), 512)], uidKey); i >= 0 {
		if u, _, ok := bytes.Cut(b[i+len(uidKey):], []byte(`"`)); ok {
			uid = u
		}
	}
	h, t := head, tail
	if mutateHead != nil && r.URL.Path == "/mutate-apps-v1-statefulset" {
		h, t = mutateHead, mutateTail
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(append(append(make([]byte, 0, len(h)+len(uid)+len(t)), h...), uid...), t...))
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
			log.Fatal(err)
		}
		var ok bool
		if mutateHead, mutateTail, ok = bytes.Cut(bytes.TrimSpace(b), []byte("<UID>")); !ok {
			log.Fatal("--mutate-response has no <UID>")
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServeTLS(*certFile, *keyFile); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
