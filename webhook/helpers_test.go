package webhook

import (
	"encoding/json"
	"log/slog"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/prometheus/client_golang/prometheus"
)

var discardLog = slog.New(slog.DiscardHandler)

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

type jsonpatchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

func toOps(ops []jsonpatchOp) []jsonpatch.Operation {
	out := make([]jsonpatch.Operation, len(ops))
	for i, o := range ops {
		out[i] = jsonpatch.Operation{Operation: o.Op, Path: o.Path}
		if o.Value != nil {
			out[i].Value = o.Value
		}
	}
	return out
}
