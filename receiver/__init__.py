"""LLM Observatory receiver: OTLP in, LLM Observatory rows in PostgreSQL out."""

__version__ = "0.1.0"
