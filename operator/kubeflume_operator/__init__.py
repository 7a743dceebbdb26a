"""The kubeflume control plane: kopf controllers for FlumeAgent and ShellJob resources."""

GROUP = "kubeflume.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
