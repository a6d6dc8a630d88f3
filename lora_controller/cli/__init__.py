"""Command line: wiring, configuration and logging."""
