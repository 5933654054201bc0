"""Receiver stage: OTLP/gRPC and OTLP/HTTP front ends, request decoding, outcome -> status mapping."""
