package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook"
)

// serveFlags are the flags of `serve` with their documented defaults (SPEC §5).
type serveFlags struct {
	opts             webhook.Options
	policy           *policyFlags
	tlsMinVersion    string
	validationAction string
	logFormat        string
	logLevel         string
}

func newServeFlags(stderr io.Writer) (*flag.FlagSet, *serveFlags) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.opts.Listen, "listen", ":9443", "HTTPS address of the admission webhooks")
	fs.StringVar(&f.opts.CertFile, "tls-cert-file", "/etc/dittofs-webhook/tls/tls.crt", "serving certificate (PEM), reloaded when it changes")
	fs.StringVar(&f.opts.KeyFile, "tls-key-file", "/etc/dittofs-webhook/tls/tls.key", "serving key (PEM), reloaded when it changes")
	fs.StringVar(&f.tlsMinVersion, "tls-min-version", "1.2", "minimum TLS version: 1.2 or 1.3")
	fs.BoolVar(&f.opts.EnableHTTP2, "enable-http2", false, "serve HTTP/2 too (off: the HTTP/2 rapid-reset CVEs)")
	fs.StringVar(&f.opts.MetricsListen, "metrics-listen", ":8080", "plain-HTTP address of /metrics, /healthz and /readyz")
	f.policy = addPolicyFlags(fs)
	fs.StringVar(&f.validationAction, "validation-action", string(policies.Deny), "what a violation gets: deny, or warn (allowed with a warning, for a report-only rollout)")
	fs.DurationVar(&f.opts.DrainPeriod, "shutdown-drain-period", 10*time.Second, "on SIGTERM, how long to keep serving, not ready, with Connection: close on every response, so that clients move their kept-alive connections to other replicas (0: no drain)")
	fs.DurationVar(&f.opts.ShutdownTimeout, "shutdown-timeout", 25e9, "how long in-flight requests may take to finish on SIGTERM, after the drain")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return fs, f
}

// options turns the parsed flags into server options; a bad value is an error
// at start, never a surprise later.
func (f *serveFlags) options(stderr io.Writer) (webhook.Options, error) {
	o := f.opts
	switch f.tlsMinVersion {
	case "1.2":
		o.TLSMinVersion = tls.VersionTLS12
	case "1.3":
		o.TLSMinVersion = tls.VersionTLS13
	default:
		return o, fmt.Errorf("--tls-min-version must be 1.2 or 1.3, got %q", f.tlsMinVersion)
	}
	var err error
	if o.Policy, err = f.policy.options(); err != nil {
		return o, err
	}
	switch a := policies.Action(f.validationAction); a {
	case policies.Deny, policies.Warn:
		o.Policy.Action = a
	default:
		return o, fmt.Errorf("--validation-action must be deny or warn, got %q", f.validationAction)
	}
	if o.DrainPeriod < 0 {
		return o, fmt.Errorf("--shutdown-drain-period must not be negative, got %s", o.DrainPeriod)
	}
	if o.ShutdownTimeout < 0 {
		return o, fmt.Errorf("--shutdown-timeout must not be negative, got %s", o.ShutdownTimeout)
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return o, err
	}
	o.Log = log
	return o, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	ho := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, got %q", format)
}

func serve(args []string, stderr io.Writer) int {
	fs, f := newServeFlags(stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logs := newLogWriter(stderr)
	defer logs.Close()
	o, err := f.options(logs)
	if err != nil {
		logs.Close()
		fmt.Fprintf(stderr, "serve: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := webhook.Run(ctx, o); err != nil {
		o.Log.Error("server failed", "error", err)
		return 1
	}
	return 0
}
