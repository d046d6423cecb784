{{/* The chart's name, or nameOverride. */}}
{{- define "certgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the release's objects: the release name when it already says certgate. */}}
{{- define "certgate.fullname" -}}
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

{{- define "certgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "certgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "certgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "certgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "certgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The names the API server calls the webhook Service by, for its serving certificate. */}}
{{- define "certgate.serviceHosts" -}}
{{- $service := include "certgate.fullname" . }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $service .Release.Namespace $service .Release.Namespace }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate, in every certificate mode. */}}
{{- define "certgate.tlsSecretName" -}}
{{- if eq .Values.certificate.mode "secret" }}
{{- required "certificate.secret.name is required when certificate.mode is secret" .Values.certificate.secret.name }}
{{- else }}
{{- printf "%s-webhook-tls" (include "certgate.fullname" .) }}
{{- end }}
{{- end }}

{{/* The leader Lease: one per release, so two releases in a namespace do not share a leader. */}}
{{- define "certgate.leaseName" -}}
{{- printf "%s-leader" (include "certgate.fullname" .) }}
{{- end }}

{{- define "certgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
