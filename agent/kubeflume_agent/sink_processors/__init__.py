"""Sink processors: how a sink group drives its sinks (one, failover, load balancing)."""
