package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// MaxBodyBytes bounds an AdmissionReview body. The apiserver caps an object at
// about 3 MiB and a review holds two (object and oldObject), so 7 MiB fits any
// real request while bounding memory per request.
const MaxBodyBytes = 7 << 20

// Handler serves one webhook over HTTP: it checks the method, content type and
// size, decodes the AdmissionReview, asks Admit for the answer and always
// writes a response — a panic in Admit becomes a 500, counted and logged with
// the request uid, and the server goes on.
type Handler struct {
	// Webhook names the webhook in metrics and logs ("mutate" or "validate").
	Webhook string
	// Admit answers a decoded request.
	Admit   func(*admission.Request) admission.Response
	Metrics *Metrics
	Log     *slog.Logger
}

// bufPool holds request bodies: a body is read whole (bounded) before it is
// decoded.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// poolMax keeps buffers grown by a rare large body out of the pool.
const poolMax = 256 << 10

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var uid types.UID
	defer func() {
		if p := recover(); p != nil {
			h.Metrics.panicked()
			h.Log.Error("panic while handling admission request", "webhook", h.Webhook, "uid", uid,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			http.Error(w, fmt.Sprintf("internal error handling admission request uid %q", uid), http.StatusInternalServerError)
		}
	}()

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, http.StatusMethodNotAllowed, reasonMethod, "method "+r.Method+" not allowed: send an AdmissionReview with POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		h.refuse(w, http.StatusUnsupportedMediaType, reasonContentType, fmt.Sprintf("content type %q not supported: send application/json", r.Header.Get("Content-Type")))
		return
	}
	if r.ContentLength > MaxBodyBytes {
		h.refuse(w, http.StatusRequestEntityTooLarge, reasonTooLarge, fmt.Sprintf("body of %d bytes is over the %d-byte limit", r.ContentLength, MaxBodyBytes))
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= poolMax {
			bufPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1)); err != nil {
		h.refuse(w, http.StatusBadRequest, reasonReadError, "reading body: "+err.Error())
		return
	}
	if buf.Len() > MaxBodyBytes {
		h.refuse(w, http.StatusRequestEntityTooLarge, reasonTooLarge, fmt.Sprintf("body is over the %d-byte limit", MaxBodyBytes))
		return
	}
	req, err := admission.DecodeReview(buf.Bytes())
	if err != nil {
		h.refuse(w, http.StatusBadRequest, reasonNotReview, err.Error())
		return
	}
	uid = req.UID

	resp := h.Admit(req)
	out, err := resp.Review(req.UID)
	if err != nil {
		panic(fmt.Sprintf("encoding the response: %v", err)) // our own types: a bug
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	// An explicit length keeps a response over net/http's 2 KB buffer from
	// being sent chunked.
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)

	took := time.Since(start)
	h.Metrics.observe(h.Webhook, req.Operation, &resp, took)
	h.logDecision(r.Context(), req, &resp, took)
}

// refuse answers a request that is not an admission request at all with a
// one-line reason, and counts it.
func (h *Handler) refuse(w http.ResponseWriter, code int, reason, msg string) {
	h.Metrics.badRequest(reason)
	h.Log.Warn("bad admission request", "webhook", h.Webhook, "status", code, "reason", reason, "error", msg)
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = msg[:i]
	}
	http.Error(w, msg, code)
}

func (h *Handler) logDecision(ctx context.Context, req *admission.Request, resp *admission.Response, took time.Duration) {
	if !h.Log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("uid", string(req.UID)),
		// namespace/name as one value to grep for, and each on its own to
		// filter on.
		slog.String("object", req.Namespace+"/"+req.ObjectName()),
		slog.String("namespace", req.Namespace),
		slog.String("name", req.ObjectName()),
		slog.String("operation", req.Operation),
		slog.String("webhook", h.Webhook),
		slog.Bool("allowed", resp.Allowed),
		slog.Int("patch_operations", len(resp.Patch)),
		slog.Duration("duration", took),
	}
	if req.DryRun != nil && *req.DryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	if resp.Result != nil {
		attrs = append(attrs, slog.Int("code", int(resp.Result.Code)), slog.String("message", resp.Result.Message))
	}
	if len(resp.Warnings) > 0 {
		attrs = append(attrs, slog.Int("warnings", len(resp.Warnings)))
	}
	h.Log.LogAttrs(ctx, slog.LevelInfo, "admission decision", attrs...)
}
