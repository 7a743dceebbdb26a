"""YARN clients (ResourceManager REST) and the local runner that mimics a NodeManager."""
