"""The core every component builds on: events, errors, counters, the channel contract, the registry of names."""
