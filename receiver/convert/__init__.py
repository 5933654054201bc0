"""Conversion stage: pure functions from decoded OTLP messages to row tuples (no I/O, no globals)."""
