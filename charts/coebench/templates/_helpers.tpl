{{/*
Names, labels and derived settings shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "coebench.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name, followed by
the chart name unless the release name already contains it. Kept to 52 characters so that
suffixes such as "-simulator" and "-leader-election" still fit in 63.
*/}}
{{- define "coebench.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "coebench.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "coebench.labels" -}}
helm.sh/chart: {{ include "coebench.chart" . }}
app.kubernetes.io/name: {{ include "coebench.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coebench
{{- end }}

{{/* Selector labels of the operator's Pods. */}}
{{- define "coebench.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coebench.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the simulator's Pods. */}}
{{- define "coebench.simulatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "coebench.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: simulator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "coebench.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coebench.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "coebench.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The operator's image. */}}
{{- define "coebench.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "coebench.tag" .) }}
{{- end }}

{{/* The default runner image: runner.image, each part defaulting to the operator image's. */}}
{{- define "coebench.runnerImage" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.runner.image.repository) (default (include "coebench.tag" .) .Values.runner.image.tag) }}
{{- end }}

{{/* The simulator's image, defaulting like the runner's. */}}
{{- define "coebench.simulatorImage" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.simulator.image.repository) (default (include "coebench.tag" .) .Values.simulator.image.tag) }}
{{- end }}

{{/* "true" when the operator runs with --leader-elect. */}}
{{- define "coebench.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The leader Lease's name (one per release, so two releases never share a Lease). */}}
{{- define "coebench.leaseName" -}}
{{- include "coebench.fullname" . }}
{{- end }}

{{/*
Namespaces that get the runner ServiceAccount, one per line: runner.serviceAccount.namespaces,
else the watched namespace when set. Empty when runner.serviceAccount.create is false.
*/}}
{{- define "coebench.runnerNamespaces" -}}
{{- if .Values.runner.serviceAccount.create }}
{{- $namespaces := .Values.runner.serviceAccount.namespaces }}
{{- if and (not $namespaces) .Values.watchNamespace }}
{{- $namespaces = list .Values.watchNamespace }}
{{- end }}
{{- range $namespaces | uniq }}
{{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The restricted container security context (Pod Security Standard "restricted"). */}}
{{- define "coebench.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Pod security context: the image's non-root user (distroless nonroot, UID 65532). */}}
{{- define "coebench.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
