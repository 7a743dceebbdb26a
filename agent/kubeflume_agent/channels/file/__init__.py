"""The file channel: a write-ahead log of data files, a checkpoint, and a replay at start."""
