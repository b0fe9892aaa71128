package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Sample is one series of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseMetrics reads the samples of a Prometheus text exposition (the format
// /metrics serves), skipping comments.
func ParseMetrics(text []byte) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		series, value := line[:i], line[i+1:]
		// A timestamp may follow the value.
		if j := strings.LastIndexByte(series, ' '); j >= 0 && !strings.Contains(series[j:], "}") {
			series, value = series[:j], series[j+1:]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		name, labels, err := parseSelector(series)
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Name: name, Labels: labels, Value: v})
	}
	return out, sc.Err()
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
		if s.Name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.Labels[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += s.Value
		}
	}
	return sum, nil
}

// parseSelector parses `name` or `name{a="b",c="d"}`.
func parseSelector(s string) (string, map[string]string, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, '{')
	if i < 0 {
		if s == "" || strings.ContainsAny(s, " \"}") {
			return "", nil, fmt.Errorf("bad metric selector %q", s)
		}
		return s, nil, nil
	}
	name, rest := s[:i], s[i+1:]
	if name == "" || !strings.HasSuffix(rest, "}") {
		return "", nil, fmt.Errorf("bad metric selector %q", s)
	}
	rest = rest[:len(rest)-1]
	labels := map[string]string{}
	for {
		rest = strings.TrimLeft(rest, " ,")
		if rest == "" {
			return name, labels, nil
		}
		eq := strings.IndexByte(rest, '=')
		if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
			return "", nil, fmt.Errorf("bad labels in metric selector %q", s)
		}
		key := strings.TrimSpace(rest[:eq])
		rest = rest[eq+1:]
		// rest starts with the quoted value.
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) {
			return "", nil, fmt.Errorf("unterminated label value in metric selector %q", s)
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return "", nil, fmt.Errorf("label value in metric selector %q: %w", s, err)
		}
		labels[key] = v
		rest = rest[end+1:]
	}
}
