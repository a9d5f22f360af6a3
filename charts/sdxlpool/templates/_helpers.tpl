{{/* Chart name, trimmed to a DNS label. */}}
{{- define "sdxlpool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name alone when it already holds the chart name. */}}
{{- define "sdxlpool.fullname" -}}
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

{{- define "sdxlpool.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "sdxlpool.labels" -}}
helm.sh/chart: {{ include "sdxlpool.chart" . }}
{{ include "sdxlpool.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sdxlpool
{{- end }}

{{/* The operator pods' selector: stable across upgrades. */}}
{{- define "sdxlpool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdxlpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sdxlpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sdxlpool.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sdxlpool.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Labels on monitoring objects: the chart's, plus monitoring.labels (what a Prometheus selects by). */}}
{{- define "sdxlpool.monitoringLabels" -}}
helm.sh/chart: {{ include "sdxlpool.chart" . }}
app.kubernetes.io/name: {{ include "sdxlpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: monitoring
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sdxlpool
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pods and Services the operator creates for every pool (sdxlpool/operator/desired/labels.py). */}}
{{- define "sdxlpool.poolSelector" -}}
matchLabels:
  app.kubernetes.io/name: sdxlpool
  app.kubernetes.io/managed-by: sdxlpool-operator
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [worker, gateway]
  - key: sdxlpool.dev/pool
    operator: Exists
{{- end }}

{{/* Where pools live: monitoring.namespaces, else watchNamespaces, else every namespace. */}}
{{- define "sdxlpool.poolNamespaces" -}}
{{- $names := .Values.monitoring.namespaces | default .Values.watchNamespaces }}
{{- if $names }}
matchNames:
  {{- toYaml $names | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/* Target labels the alerts and dashboard group by: the pool, worker|gateway, the GPU slug. */}}
{{- define "sdxlpool.poolRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_sdxlpool_dev_pool]
  targetLabel: pool
- sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
  targetLabel: component
- sourceLabels: [__meta_kubernetes_pod_label_sdxlpool_dev_gpu]
  targetLabel: gpu
{{- end }}

{{/* Values the schema cannot cross-check. */}}
{{- define "sdxlpool.validate" -}}
{{- if and .Values.monitoring.podMonitor.enabled .Values.monitoring.serviceMonitor.enabled }}
{{- fail "monitoring.podMonitor.enabled and monitoring.serviceMonitor.enabled: choose one, or every pool is scraped twice" }}
{{- end }}
{{- if and .Values.peering.standalone (gt (int .Values.replicas) 1) }}
{{- fail (printf "peering.standalone: true needs replicas: 1 (got replicas: %d): without peering every replica would work at once" (int .Values.replicas)) }}
{{- end }}
{{- end }}
