"""Coverage-guided fuzzing (atheris, libFuzzer): `make fuzz`, a short run in `make test`, `make sanitize`.

Targets (tests/fuzz/targets.py): `native` (the C trace decoder against upb + the pure converter, and the
wire scanners), `json` (the OTLP/JSON decoder, and JSON/protobuf parity), `converters` (metrics and logs:
scanners, upb, the converters, the budget). A crash, an unhandled exception, a mismatch or an input
taking over 1 s (libFuzzer's -timeout=1) fails the run. Run one by hand:

    .venv/bin/python -m tests.fuzz native -max_total_time=60 var/fuzz/native
"""
