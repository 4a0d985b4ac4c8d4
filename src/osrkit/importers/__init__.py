"""Converters from other projects' checkpoint formats into osrkit checkpoints."""
