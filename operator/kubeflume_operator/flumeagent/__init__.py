"""FlumeAgent: a Flume pipeline declared as a Kubernetes resource, run as agent pods."""
