"""What a pollable source's or a sink's `process()` reports back to its runner."""

import enum


class Status(enum.Enum):
    READY = "READY"  # did work; call again at once
    BACKOFF = "BACKOFF"  # nothing to do (or a soft failure); the runner waits before calling again
