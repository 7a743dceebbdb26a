{{/*
Rules for the namespaced objects the operator reads and writes, granted cluster-wide (ClusterRole)
or in each watched namespace (Role). Keep this list equal to the API calls in
operator/kubeflume_operator: tests/packaging/test_helm_chart.py compares them.
*/}}
{{- define "kubeflume.namespacedRules" -}}
# The watched custom resources: kopf lists/watches them and patches its annotations and status.
- apiGroups: ["kubeflume.io"]
  resources: ["flumeagents", "shelljobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubeflume.io"]
  resources: ["flumeagents/status", "shelljobs/status"]
  verbs: ["get", "patch"]
# kopf posts Kubernetes events for handler progress and errors.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.peering.enabled }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
