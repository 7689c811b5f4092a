{{/* Names and labels. */}}
{{- define "vecstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vecstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "vecstream.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "vecstream.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vecstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vecstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "c" $component). */}}
{{- define "vecstream.selector" -}}
app.kubernetes.io/name: {{ include "vecstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c.name }}
{{- end -}}

{{- define "vecstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vecstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vecstream.secretName" -}}
{{- default (printf "%s-credentials" (include "vecstream.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The components, as JSON: name, the values key, the command's arguments, whether it runs on
GPUs, the port of /metrics, /healthz and /readyz, the Kafka group and topic it consumes
(lag scaling) or the Temporal task queue it polls (backlog scaling), and its workload kind.
The embedder is a StatefulSet: its Kafka transactional id (`<prefix>-<pod name>`) must
stay the same across restarts so that a restarted pod fences its predecessor's transactions.
*/}}
{{- define "vecstream.components" -}}
{{- $cfg := .Values.config -}}
{{- $embedderGroup := dig "embedder" "group_id" "vecstream-embedder" $cfg -}}
{{- $sinkGroup := dig "sink" "group_id" "vecstream-sink" $cfg -}}
{{- $cpuQueue := dig "temporal" "cpu_task_queue" "vecstream-cpu" $cfg -}}
{{- $gpuQueue := dig "temporal" "gpu_task_queue" "vecstream-gpu" $cfg -}}
{{- $servePort := int .Values.serve.port -}}
{{- $list := list
  (dict "name" "embedder" "key" "embedder" "kind" "StatefulSet" "args" (list "run" "embedder") "port" 9464 "group" $embedderGroup "topic" "docs.documents.v1")
  (dict "name" "sink" "key" "sink" "kind" "Deployment" "args" (list "run" "sink") "port" 9464 "group" $sinkGroup "topic" "docs.vectors.v1")
  (dict "name" "worker-cpu" "key" "workerCpu" "kind" "Deployment" "args" (list "run" "worker" "--queue" "cpu") "port" 9464 "queue" $cpuQueue)
  (dict "name" "worker-gpu" "key" "workerGpu" "kind" "Deployment" "args" (list "run" "worker" "--queue" "gpu") "port" 9464 "queue" $gpuQueue "gpu" true)
  (dict "name" "serve" "key" "serve" "kind" "Deployment" "args" (list "serve" "--addr" (printf "0.0.0.0:%d" $servePort)) "port" $servePort)
  (dict "name" "openlineage" "key" "openlineage" "kind" "Deployment" "args" (list "run" "openlineage") "port" 9464)
-}}
{{- $enabled := list -}}
{{- range $list -}}
{{- if (index $.Values .key).enabled -}}
{{- $enabled = append $enabled . -}}
{{- end -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end -}}

{{/* Credentials as environment variables (each optional: unset keys stay unset). */}}
{{- define "vecstream.secretEnv" -}}
{{- $secret := include "vecstream.secretName" . -}}
{{- range $env, $key := dict
  "VECSTREAM_KAFKA_SASL_USERNAME" "kafka-sasl-username"
  "VECSTREAM_KAFKA_SASL_PASSWORD" "kafka-sasl-password"
  "VECSTREAM_REGISTRY_PASSWORD" "registry-password"
  "VECSTREAM_WEAVIATE_API_KEY" "weaviate-api-key"
  "VECSTREAM_TEMPORAL_API_KEY" "temporal-api-key"
  "VECSTREAM_OPENLINEAGE_HTTP_API_KEY" "openlineage-api-key" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{/*
A map as TOML: (dict "prefix" "" "m" $map). Helm's toToml writes every number as a float
(YAML numbers reach templates as float64), which vecstream's integer keys refuse; whole
numbers are written as integers here. Scalars first, then each nested map as [table].
*/}}
{{- define "vecstream.toml" -}}
{{- $m := .m -}}
{{- $prefix := .prefix -}}
{{- range $k := keys $m | sortAlpha }}
{{- $v := index $m $k }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "vecstream.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $m | sortAlpha }}
{{- $v := index $m $k }}
{{- if kindIs "map" $v }}
{{- $name := ternary $k (printf "%s.%s" $prefix $k) (eq $prefix "") }}

[{{ $name }}]
{{- include "vecstream.toml" (dict "prefix" $name "m" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "vecstream.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "vecstream.tomlValue" $v }}{{ end }}]
{{- else if kindIs "invalid" . -}}
{{ fail "config: a key without a value (TOML has no null)" }}
{{- else -}}
{{ fail (printf "config: cannot write %s as TOML" (kindOf .)) }}
{{- end -}}
{{- end -}}
