{{/*
Rules on namespaced objects, granted cluster-wide (ClusterRole) or in each watched namespace (Role).
Exactly what the operator uses: tests/packaging/test_helm_chart.py derives the same set from
kopf's handler registry and the Kubernetes client calls in operator/kubeflume_operator.
*/}}
{{- define "kubeflume.namespacedRules" -}}
# The custom resources: kopf watches them, and patches their annotations, finalizer and status.
- apiGroups: ["kubeflume.io"]
  resources: ["flumeagents", "shelljobs"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["kubeflume.io"]
  resources: ["flumeagents/status", "shelljobs/status"]
  verbs: ["patch"]
# Handler progress, errors and config problems are posted as Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# A FlumeAgent's children: its rendered flume.conf, its Service and its workload.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The ServiceAccount of an agent that reads pods (kubernetes interceptor).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
# A FlumeAgent's PodDisruptionBudget.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
# Drain on scale-down: the claims of removed StatefulSet pods, deleted only after their drain Job
# succeeded; the Jobs themselves (annotated with the drain's report, deleted when a scale-up cancels).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "create", "patch", "delete"]
# ShellJob files and archives may come from a ConfigMap or Secret key, and the delegation token
# from a Secret: the operator reads them (never lists or writes Secrets).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Agent pods are indexed (watched) for the FlumeAgent status; their metrics are scraped over HTTP.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- if .Values.peering.enabled }}
{{- if .Values.watchNamespaces }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
{{- end -}}
