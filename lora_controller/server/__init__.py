"""The HTTP server: router API, metrics, health."""
