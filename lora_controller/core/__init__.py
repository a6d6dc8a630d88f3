"""Lowest layer: small dependency-free helpers shared by every layer (clocks, names, quantities)."""
