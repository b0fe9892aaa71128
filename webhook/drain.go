package webhook

import (
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// drain moves clients' kept-alive connections off a server that is shutting
// down, before http.Server.Shutdown closes what is left.
//
// Shutdown closes every idle connection at once, and a client may be writing
// a request on one at that instant: the request is lost, and a POST that fails
// on a reused connection after bytes were written is retried neither by Go's
// transport nor by kube-apiserver (kubernetes#127335 for the apiserver up to
// 1.36, which keeps using pooled connections to a pod that has left the
// endpoints). An HTTP/1.1 server cannot tell a client to stop using an idle
// connection; it can only say so in a response. So, for the drain period,
// every response carries Connection: close: the client reads a complete answer,
// drops that connection and dials again, to a ready endpoint. Connections the
// client does not use during the whole period are still closed by Shutdown
// (the race that remains, docs/reliability.md). Over HTTP/2, Go's server turns
// Connection: close into a graceful GOAWAY.
//
// SetKeepAlivesEnabled(false) would add the header too, but it closes the idle
// connections at once: the very race this avoids.
type drain struct {
	closing atomic.Bool  // set when the drain begins: every response closes its connection
	open    atomic.Int64 // connections accepted and not yet closed, for the log
	closes  atomic.Int64 // responses sent with Connection: close
}

// connState is the server's ConnState hook: it counts open connections. Every
// connection reports StateNew once and then exactly one of StateClosed or
// StateHijacked (HTTP/2 connections too: the HTTP/1 side reports the close).
func (d *drain) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		d.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		d.open.Add(-1)
	}
}

// handler sets Connection: close on every response written once the drain
// has begun, including the responses of requests already in flight when it
// began.
func (d *drain) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&closingWriter{ResponseWriter: w, d: d}, r)
	})
}

// closingWriter decides on Connection: close when the response header is
// written, not when the request arrived.
type closingWriter struct {
	http.ResponseWriter
	d       *drain
	decided bool
}

func (w *closingWriter) decide() {
	if w.decided {
		return
	}
	w.decided = true
	if w.d.closing.Load() {
		w.Header().Set("Connection", "close")
		w.d.closes.Add(1)
	}
}

func (w *closingWriter) WriteHeader(code int) {
	if code >= 200 { // an informational header is not the response's
		w.decide()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(p []byte) (int, error) {
	w.decide()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// run drains for period: from now on every response closes its connection,
// while the listener stays open (a client whose view of the endpoints is late
// can still connect and be answered). The period is fixed: it does not end
// when no connection is open: clients that dial a new connection for each
// request (as every client does once answered with Connection: close) leave
// none open for a moment between requests, and a drain that ended at such a
// moment would close the listener under them (a first version did: in
// TestSIGTERMWithRequestsInFlight its 3 s drain ended within milliseconds of
// the last long request, and the clients were refused from then on). Begin
// and end are logged, with the connections still open at the end: Shutdown
// closes the idle ones and waits for the active ones.
func (d *drain) run(period time.Duration, log *slog.Logger) {
	d.closing.Store(true)
	log.Info("draining connections: each response closes its connection", "period", period, "open_connections", d.open.Load())
	time.Sleep(period)
	log.Info("drained", "period", period, "responses_with_connection_close", d.closes.Load(), "open_connections", d.open.Load())
}
