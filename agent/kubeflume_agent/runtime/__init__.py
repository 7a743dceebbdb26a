"""The runtime: builds components from an AgentConfig, moves events, counts them."""
