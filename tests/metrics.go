package tests

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a Prometheus text exposition: a counter's, gauge's
// or untyped value, a histogram's _bucket, _sum or _count, a summary's
// quantile, _sum or _count.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ReadMetrics reads the samples of a Prometheus text exposition (what /metrics
// serves) with expfmt, histograms and summaries flattened as Prometheus does.
func ReadMetrics(r io.Reader) ([]Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{}, slices.Collect(maps.Values(fams))...)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(vec))
	for _, s := range vec {
		labels := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			if k != model.MetricNameLabel {
				labels[string(k)] = string(v)
			}
		}
		name := string(s.Metric[model.MetricNameLabel])
		out = append(out, Sample{Name: name, Labels: labels, Value: float64(s.Value)})
	}
	return out, nil
}

// SumMetric adds up the samples matching a selector: `name` or
// `name{label="value",...}`, the labels a subset of the series' labels.
func SumMetric(samples []Sample, selector string) (float64, error) {
	name, want, err := parseSelector(selector)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, s := range samples {
		match := s.Name == name
		for k, v := range want {
			match = match && s.Labels[k] == v
		}
		if match {
			sum += s.Value
		}
	}
	return sum, nil
}

// parseSelector parses `name` or `name{a="b",c="d"}`: a series as the text
// exposition writes it, which is how the Prometheus text parser reads it.
func parseSelector(s string) (string, map[string]string, error) {
	if strings.ContainsAny(s, "\n#") || strings.TrimSpace(s) == "" {
		return "", nil, fmt.Errorf("bad metric selector %q", s)
	}
	samples, err := ReadMetrics(strings.NewReader(strings.TrimSpace(s) + " 0\n"))
	if err != nil {
		return "", nil, fmt.Errorf("bad metric selector %q: %w", s, err)
	}
	if len(samples) != 1 {
		return "", nil, errors.New("bad metric selector " + s)
	}
	return samples[0].Name, samples[0].Labels, nil
}
