"""ShellJob reconciliation: a ShellJob resource becomes one YARN DistributedShell application."""
