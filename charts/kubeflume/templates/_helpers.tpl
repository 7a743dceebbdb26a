{{/* Name of the release's objects, at most 63 characters (a DNS label). */}}
{{- define "kubeflume.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubeflume.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubeflume.labels" -}}
{{ include "kubeflume.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kubeflume.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeflume.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubeflume.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kubeflume.agentImage" -}}
{{- printf "%s:%s" .Values.agentImage.repository (default .Chart.AppVersion .Values.agentImage.tag) -}}
{{- end -}}

{{/* The admission webhook's objects: its Service, configuration (cluster-scoped: named after the
     release and its namespace) and the Secret holding its certificate. */}}
{{- define "kubeflume.webhookService" -}}
{{- printf "%s-webhook" (include "kubeflume.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubeflume.webhookConfiguration" -}}
{{- printf "%s-%s" (include "kubeflume.fullname" .) .Release.Namespace | trunc 200 | trimSuffix "-" -}}.kubeflume.io
{{- end -}}

{{- define "kubeflume.webhookSecret" -}}
{{- printf "%s-tls" (include "kubeflume.webhookService" .) -}}
{{- end -}}

{{/* The operator makes and keeps its own certificate unless cert-manager does. */}}
{{- define "kubeflume.webhookOwnCertificate" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) -}}true{{- end -}}
{{- end -}}
