"""Telemetry stage: Prometheus metrics, structured logs, health and readiness."""
