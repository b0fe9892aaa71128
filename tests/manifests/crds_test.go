package manifests

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The subsets of the cert-manager (cert-manager.io/v1) and Prometheus
// Operator (monitoring.coreos.com/v1) schemas that the manifests use, with
// their upstream JSON names. Decoding is strict, so a field missing here is
// either a typo in a manifest or a field to add here after checking the
// upstream API reference; importing those projects' modules for a handful of
// structs is not worth their dependency trees.

type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		IsCA                 bool                   `json:"isCA,omitempty"`
		CommonName           string                 `json:"commonName,omitempty"`
		DNSNames             []string               `json:"dnsNames,omitempty"`
		SecretName           string                 `json:"secretName"`
		Duration             string                 `json:"duration,omitempty"`
		RenewBefore          string                 `json:"renewBefore,omitempty"`
		PrivateKey           *certificatePrivateKey `json:"privateKey,omitempty"`
		Usages               []string               `json:"usages,omitempty"`
		IssuerRef            issuerRef              `json:"issuerRef"`
		RevisionHistoryLimit *int32                 `json:"revisionHistoryLimit,omitempty"`
	} `json:"spec"`
}

type certificatePrivateKey struct {
	RotationPolicy string `json:"rotationPolicy,omitempty"`
	Encoding       string `json:"encoding,omitempty"`
	Algorithm      string `json:"algorithm,omitempty"`
	Size           int    `json:"size,omitempty"`
}

type issuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct {
			CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty"`
		} `json:"selfSigned,omitempty"`
		CA *struct {
			SecretName            string   `json:"secretName"`
			CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty"`
			OCSPServers           []string `json:"ocspServers,omitempty"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// keyUsages are the values cert-manager accepts in Certificate.spec.usages.
var keyUsages = map[string]bool{
	"signing": true, "digital signature": true, "content commitment": true,
	"key encipherment": true, "key agreement": true, "data encipherment": true,
	"cert sign": true, "crl sign": true, "encipher only": true, "decipher only": true,
	"any": true, "server auth": true, "client auth": true, "code signing": true,
	"email protection": true, "s/mime": true, "ipsec end system": true,
	"ipsec tunnel": true, "ipsec user": true, "timestamping": true,
	"ocsp signing": true, "microsoft sgc": true, "netscape sgc": true,
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert       string            `json:"alert,omitempty"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}
