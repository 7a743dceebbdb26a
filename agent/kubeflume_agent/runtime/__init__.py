"""The composition root: builds components from an AgentConfig, wires and runs them, serves their counters."""
