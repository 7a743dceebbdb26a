"""kubeflume's data plane: Apache Flume's agent model (sources -> channels -> sinks) in Python."""

__version__ = "0.1.0"
