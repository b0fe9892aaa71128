{{/*
The chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "dittofs-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: the release name when it already says
dittofs-webhook (`helm install dittofs-webhook ...` gives the names of
deploy/default), else RELEASE-dittofs-webhook.
*/}}
{{- define "dittofs-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels that select the server's pods. The Deployment selector is immutable:
never change this set.
*/}}
{{- define "dittofs-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dittofs-webhook.name" . }}
app.kubernetes.io/component: webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object: the selector labels and Helm's.
*/}}
{{- define "dittofs-webhook.labels" -}}
{{ include "dittofs-webhook.selectorLabels" . }}
app.kubernetes.io/part-of: dittofs-webhook
app.kubernetes.io/version: {{ include "dittofs-webhook.tag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dittofs-webhook.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The image reference; a tag that is a digest (sha256:...) is joined with @.
*/}}
{{- define "dittofs-webhook.image" -}}
{{- $tag := include "dittofs-webhook.tag" . }}
{{- if hasPrefix "sha256:" $tag }}
{{- printf "%s@%s" .Values.image.repository $tag }}
{{- else if hasPrefix "@" $tag }}
{{- printf "%s%s" .Values.image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The serving certificate's Secret, mounted by the server and read by the
cainjector; and the Certificate the webhook configurations name.
*/}}
{{- define "dittofs-webhook.tlsSecret" -}}
{{ include "dittofs-webhook.fullname" . }}-tls
{{- end }}

{{- define "dittofs-webhook.injectCAFrom" -}}
{{ .Release.Namespace }}/{{ include "dittofs-webhook.fullname" . }}-serving-cert
{{- end }}

{{/*
The namespaces the webhooks skip: kube-system and the release namespace
always, so a StatefulSet there stays writable while the webhook is down (the
usual guard against an admission deadlock), then the user's.
*/}}
{{- define "dittofs-webhook.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- range .Values.webhooks.excludedNamespaces }}
{{- $ns = append $ns . }}
{{- end }}
{{- toJson (uniq $ns) }}
{{- end }}
