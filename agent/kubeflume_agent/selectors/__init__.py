"""Channel selectors: which channels of a source receive each event."""
