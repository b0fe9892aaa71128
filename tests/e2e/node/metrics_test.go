package node

import (
	"fmt"
	"io"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sumMetric reads a Prometheus text exposition (expfmt, the format's own
// parser) and sums the samples of the counter or gauge name whose labels
// include every pair of want. found is false when there is no such sample.
func sumMetric(exposition io.Reader, name string, want map[string]string) (sum float64, found bool, err error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(exposition)
	if err != nil {
		return 0, false, fmt.Errorf("parsing metrics: %w", err)
	}
	for _, m := range families[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		found = true
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum, found, nil
}
