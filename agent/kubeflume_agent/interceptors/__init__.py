"""Interceptors: change or drop events between a source and its channel processor, as in Flume."""
