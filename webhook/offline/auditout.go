package offline

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
)

// The output formats of audit.
const (
	FormatText   = "text"
	FormatReport = "report"
	FormatJUnit  = "junit"
)

// What the OpenReports reports say about their origin.
const (
	// ReportSource is every Report's and result's source.
	ReportSource = "dittofs-webhook"
	// ReportPolicy is every result's policy; its rules are AuditRules.
	ReportPolicy = "dittofs-storage"
	// reportNamePrefix starts every Report's name, before the
	// StatefulSet's.
	reportNamePrefix = "dittofs-storage-"
	// ManagedByLabel marks the Reports audit writes, so they can be listed
	// and pruned (kubectl apply --prune -l).
	ManagedByLabel = "app.kubernetes.io/managed-by"
)

// WriteAuditText prints one line per audited StatefulSet: namespace/name,
// pass or fail, the failing rule IDs and what to do about each.
func WriteAuditText(w io.Writer, r *AuditResult) error {
	var buf bytes.Buffer
	for _, a := range r.Audited {
		failed := a.Failed()
		if len(failed) == 0 {
			fmt.Fprintf(&buf, "%s: pass", a.Name)
		} else {
			var fixes []string
			for _, res := range a.Results {
				if res.Verdict == Fail {
					fixes = append(fixes, res.Rule+": "+res.Fix)
				}
			}
			fmt.Fprintf(&buf, "%s: fail (%s): %s", a.Name, strings.Join(failed, ", "), strings.Join(fixes, "; "))
		}
		if a.Note != "" {
			fmt.Fprintf(&buf, " [%s]", a.Note)
		}
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Summary is the one line audit prints on stderr in every format: how many
// StatefulSets were audited, passed and failed, and how many unlabelled ones
// were skipped.
func Summary(r *AuditResult) string {
	failed := 0
	for _, a := range r.Audited {
		if len(a.Failed()) > 0 {
			failed++
		}
	}
	s := fmt.Sprintf("audit: %d StatefulSet(s) audited: %d pass, %d fail", len(r.Audited), len(r.Audited)-failed, failed)
	if n := len(r.Skipped); n > 0 {
		s += fmt.Sprintf("; %d not labelled %s skipped (--manage audits them as if labelled)", n, policies.LabelServer)
	}
	return s
}

// Reports are the OpenReports Reports of r, one per audited StatefulSet, in
// its namespace, with one result per rule; now is every result's timestamp.
func Reports(r *AuditResult, now time.Time) []reportsv1alpha1.Report {
	reports := make([]reportsv1alpha1.Report, 0, len(r.Audited))
	for _, a := range r.Audited {
		scope := &corev1.ObjectReference{
			APIVersion: "apps/v1",
			Kind:       "StatefulSet",
			Namespace:  a.View.Metadata.Namespace,
			Name:       a.View.Metadata.Name,
			UID:        a.Typed.UID,
		}
		rep := reportsv1alpha1.Report{
			TypeMeta: metav1.TypeMeta{APIVersion: reportsv1alpha1.SchemeGroupVersion.String(), Kind: "Report"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      reportNamePrefix + a.View.Metadata.Name,
				Namespace: a.View.Metadata.Namespace,
				Labels:    map[string]string{ManagedByLabel: ReportSource},
			},
			Source: ReportSource,
			Scope:  scope,
			Summary: reportsv1alpha1.ReportSummary{
				Pass: a.Count(Pass),
				Fail: a.Count(Fail),
			},
		}
		for _, res := range a.Results {
			rr := reportsv1alpha1.ReportResult{
				Source:      ReportSource,
				Policy:      ReportPolicy,
				Rule:        res.Rule,
				Severity:    reportsv1alpha1.ResultSeverity(res.Severity),
				Timestamp:   metav1.Timestamp{Seconds: now.Unix()},
				Result:      reportsv1alpha1.Result(res.Verdict),
				Scored:      true,
				Subjects:    []corev1.ObjectReference{*scope},
				Description: res.Message,
			}
			if res.Verdict == Fail {
				rr.Properties = map[string]string{"fix": res.Fix}
				if len(res.Fields) > 0 {
					rr.Properties["fields"] = strings.Join(res.Fields, ",")
				}
			}
			rep.Results = append(rep.Results, rr)
		}
		reports = append(reports, rep)
	}
	return reports
}

// WriteAuditReport prints the Reports as a YAML stream, what kubectl apply
// -f - reads.
func WriteAuditReport(w io.Writer, r *AuditResult, now time.Time) error {
	var buf bytes.Buffer
	for i, rep := range Reports(r, now) {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(rep)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// The JUnit XML model, as Jenkins, GitLab and GitHub reporters read it
// (the Ant junit schema's common subset).
type (
	// JUnitSuites is the document: one suite per StatefulSet.
	JUnitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Suites   []JUnitSuite `xml:"testsuite"`
	}
	// JUnitSuite is one StatefulSet: one case per rule.
	JUnitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Cases    []JUnitCase `xml:"testcase"`
	}
	// JUnitCase is one rule on one StatefulSet.
	JUnitCase struct {
		ClassName string        `xml:"classname,attr"`
		Name      string        `xml:"name,attr"`
		Failure   *JUnitFailure `xml:"failure,omitempty"`
		Skipped   *JUnitSkipped `xml:"skipped,omitempty"`
	}
	// JUnitFailure is a failed rule: the message, the severity as its type,
	// and what to do as its text.
	JUnitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
	// JUnitSkipped is an unlabelled StatefulSet, not audited.
	JUnitSkipped struct {
		Message string `xml:"message,attr"`
	}
)

// JUnit is r as JUnit test suites: one suite per StatefulSet, one case per
// rule; an unlabelled StatefulSet is a suite of one skipped case.
func JUnit(r *AuditResult) JUnitSuites {
	out := JUnitSuites{Name: "dittofs-webhook audit"}
	for _, a := range r.Audited {
		s := JUnitSuite{Name: a.Name}
		for _, res := range a.Results {
			c := JUnitCase{ClassName: a.Name, Name: res.Rule}
			switch res.Verdict {
			case Fail:
				c.Failure = &JUnitFailure{Message: res.Message, Type: string(res.Severity), Text: res.Fix}
				s.Failures++
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		out.Suites = append(out.Suites, s)
	}
	for _, sk := range r.Skipped {
		out.Suites = append(out.Suites, JUnitSuite{Name: sk.Name, Tests: 1, Skipped: 1, Cases: []JUnitCase{{
			ClassName: sk.Name, Name: "managed",
			Skipped: &JUnitSkipped{Message: fmt.Sprintf("not labelled %s: not audited (--manage audits it as if labelled)", policies.LabelServer)},
		}}})
	}
	for _, s := range out.Suites {
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Skipped += s.Skipped
	}
	return out
}

// WriteAuditJUnit prints r as a JUnit XML document.
func WriteAuditJUnit(w io.Writer, r *AuditResult) error {
	b, err := xml.MarshalIndent(JUnit(r), "", "  ")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	buf.Write(b)
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}
