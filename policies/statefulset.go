package policies

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/api/resource"
)

// StatefulSet is what the policies read of an apps/v1 StatefulSet, and nothing
// more: the JSON names are apps/v1's, so an AdmissionReview's object decodes
// straight into it. A rule that needs another field adds it here, in one line;
// until then the compiler keeps a rule from reading what was never decoded.
type StatefulSet struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       Spec       `json:"spec"`
}

// ObjectMeta is the StatefulSet's metadata the policies read.
type ObjectMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

// Spec is the StatefulSet's spec the policies read.
type Spec struct {
	Template             PodTemplate      `json:"template"`
	VolumeClaimTemplates []ClaimTemplate  `json:"volumeClaimTemplates"`
	RetentionPolicy      *RetentionPolicy `json:"persistentVolumeClaimRetentionPolicy"`
}

// PodTemplate is spec.template.
type PodTemplate struct {
	Spec PodSpec `json:"spec"`
}

// PodSpec is spec.template.spec.
type PodSpec struct {
	Volumes    []Volume    `json:"volumes"`
	Containers []Container `json:"containers"`
}

// Volume is a pod volume: its name, and whether it is an emptyDir.
type Volume struct {
	Name     string    `json:"name"`
	EmptyDir *struct{} `json:"emptyDir"`
}

// Container is a container's name and volume mounts.
type Container struct {
	Name         string        `json:"name"`
	VolumeMounts []VolumeMount `json:"volumeMounts"`
}

// VolumeMount is a container's volume mount.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// RetentionPolicy is spec.persistentVolumeClaimRetentionPolicy.
type RetentionPolicy struct {
	WhenDeleted string `json:"whenDeleted"`
	WhenScaled  string `json:"whenScaled"`
}

// ClaimTemplate is a volumeClaimTemplate: its name, storage class and
// requests, and Raw, the template exactly as it was sent. A carry-over (U1)
// puts Raw back, so fields this build does not know survive: the apiserver
// rejects any change to volumeClaimTemplates on UPDATE.
type ClaimTemplate struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		StorageClassName *string `json:"storageClassName"`
		Resources        struct {
			Requests map[string]resource.Quantity `json:"requests"`
		} `json:"resources"`
	} `json:"spec"`
	// Raw is filled by the decoder (webhook/admission), never by JSON tags.
	Raw json.RawMessage `json:"-"`
}

// Name is the template's name, as the StatefulSet controller prefixes its
// claims with it.
func (c *ClaimTemplate) Name() string { return c.Metadata.Name }
