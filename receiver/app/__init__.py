"""Wiring and command line: configuration, component start/shutdown order, signals."""
