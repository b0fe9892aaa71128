// Command floor is the lower bound of the benchmarks: a TLS HTTP/1.1 server that reads each body and answers a
// canned "allowed" AdmissionReview, decoding nothing. The apiserver rejects an answer for another uid, so it copies
// the one after `"request":{"uid":"`, which the apiserver writes in the first bytes (the validate body, in another
// key order, gets an empty uid: the load generator does not check it).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	uidKey  = []byte(`"request":{"uid":"`)
	head    = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	tail    = []byte(`","allowed":true}}`)
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
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(append(append(make([]byte, 0, len(head)+len(uid)+len(tail)), head...), uid...), tail...))
}

func main() {
	listen := flag.String("listen", ":9443", "HTTPS address")
	certFile := flag.String("tls-cert-file", "tls.crt", "serving certificate")
	keyFile := flag.String("tls-key-file", "tls.key", "serving key")
	flag.Parse()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	srv := &http.Server{Addr: *listen, Handler: http.HandlerFunc(handle), Protocols: protocols,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 90 * time.Second}
	// SIGTERM comes once the load has stopped: nothing is in flight to wait for.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	if err := srv.ListenAndServeTLS(*certFile, *keyFile); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
