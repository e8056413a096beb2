{{/*
Names and labels. Kept to the Go-template subset that test/static/helm-render.ts
understands (see there); the static tests render every template with it.
*/}}

{{- define "sse-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sse-gateway.fullname" -}}
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

{{- define "sse-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sse-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sse-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sse-gateway.labels" -}}
helm.sh/chart: {{ include "sse-gateway.chart" . }}
{{ include "sse-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sse-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sse-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sse-gateway.secretName" -}}
{{- default (include "sse-gateway.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "sse-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
An environment value: lists joined with commas, numbers as integers (values
are float64 in Helm, and 1000000 would otherwise print as 1e+06).
*/}}
{{- define "sse-gateway.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- int64 . | toString }}
{{- else if kindIs "invalid" . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The drain window in milliseconds, as the gateway will see it. */}}
{{- define "sse-gateway.drainWindowMs" -}}
{{- if hasKey .Values.config "DRAIN_WINDOW_MS" }}
{{- include "sse-gateway.envValue" .Values.config.DRAIN_WINDOW_MS }}
{{- else }}
{{- 10000 }}
{{- end }}
{{- end }}

{{/*
Checks that JSON Schema cannot express: they fail the render with a message
that says what to change.
*/}}
{{- define "sse-gateway.validate" -}}
{{- $drainSeconds := div (add (int64 (include "sse-gateway.drainWindowMs" .)) 999) 1000 }}
{{- $minGrace := add .Values.preStopSleepSeconds $drainSeconds 5 }}
{{- if lt (int64 .Values.terminationGracePeriodSeconds) $minGrace }}
{{- fail (printf "terminationGracePeriodSeconds must be at least %d (preStopSleepSeconds + DRAIN_WINDOW_MS in seconds + 5), or pods are killed before their streams drain" $minGrace) }}
{{- end }}
{{- if and .Values.secret.jwtSecret .Values.secret.jwtPublicKey }}
{{- fail "set secret.jwtSecret or secret.jwtPublicKey, not both" }}
{{- end }}
{{- if and .Values.secret.existingSecret (or .Values.secret.jwtSecret .Values.secret.jwtPublicKey) }}
{{- fail "secret.existingSecret is set: put JWT_SECRET or JWT_PUBLIC_KEY in that Secret, not in secret.jwtSecret or secret.jwtPublicKey" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int64 .Values.autoscaling.maxReplicas) (int64 .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.connections.enabled)) }}
{{- fail "autoscaling needs targetCPUUtilizationPercentage or connections.enabled" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.parentRefs must name the Gateway to attach to" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}
