"""The validating admission webhook: FlumeAgents and ShellJobs with problems are refused at `kubectl apply`."""
