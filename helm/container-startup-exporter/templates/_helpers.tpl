{{/*
Chart name, cut to the 63 characters a label value allows.
*/}}
{{- define "cse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: "<release>-<chart>", or the release name
alone when it already contains the chart name.
*/}}
{{- define "cse.fullname" -}}
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
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "cse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the pods; they never change across upgrades.
*/}}
{{- define "cse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "cse.labels" -}}
helm.sh/chart: {{ include "cse.chart" . }}
{{ include "cse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "cse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "cse.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The exporter's config file: the `config` value with http.listen_address set
from `port`, and explicit histogram buckets replacing the default exponential
ones (Helm merges the user's map into the default instead of replacing it).
*/}}
{{- define "cse.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $http := get $config "http" | default dict }}
{{- $_ := set $http "listen_address" (printf "0.0.0.0:%d" (int .Values.port)) }}
{{- $_ := set $config "http" $http }}
{{- /* Helm merges maps: explicit buckets given over the default exponential ones win. */}}
{{- $metrics := get $config "metrics" | default dict }}
{{- range $key := list "startup_buckets" "phase_buckets" }}
{{- $b := get $metrics $key }}
{{- if and $b (hasKey $b "explicit") }}
{{- $_ := set $metrics $key (dict "explicit" $b.explicit) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Scrape endpoint settings shared by the ServiceMonitor and the PodMonitor.
*/}}
{{- define "cse.scrapeEndpoint" -}}
port: metrics
path: /metrics
scheme: http
{{- with .interval }}
interval: {{ . }}
{{- end }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
# One target per node: keep the node's name on every series.
relabelings:
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
  {{- with .relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
