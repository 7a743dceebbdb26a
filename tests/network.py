"""Local ports for tests that start real servers and processes."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A local TCP port nobody listens on now: a server may bind it, and a client is refused there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
