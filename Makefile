# The whole set-up is two commands: `make run` (serve on 4317/4318 with an embedded PostgreSQL)
# and `make test` (the suite against throwaway PostgreSQL clusters). Both install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/receiver.toml
# make bench: seconds of load, transport, exporters, spans per request; BENCH_ARGS reaches loadgen or
# the bench driver (e.g. BENCH_ARGS="--set pipeline.writers=2 --large-share 0.2 --json").
BENCH_DURATION  ?= 30
BENCH_PROTOCOL  ?= grpc
BENCH_EXPORTERS ?= 4
BENCH_BATCH     ?= 512
BENCH_ARGS      ?=
# make bench-query: the read API over QUERY_ROWS spans loaded by COPY (QUERY_ARGS: --flavor, --keep DIR, ...).
QUERY_ROWS ?= 5000000
QUERY_ARGS ?=
# make test: pytest's options. Two processes, a test module each at a time (module fixtures are shared
# within a module): most tests wait on PostgreSQL, receivers and sockets, so two overlap well even on 2 cores.
TEST_ARGS ?= -n 2 --dist loadfile
# make fuzz: seconds per fuzz target (tests/fuzz: native, signals, json, jsonwire, converters, pgcopy, rules, h2grpc); make sanitize runs each this long too.
FUZZ_SECONDS    ?= 60

# make soak: a long run at a fixed rate with per-30-s samples and a first-vs-last-window verdict.
SOAK_DURATION ?= 1800
SOAK_RATE     ?= 10000
SOAK_ARGS     ?=

.PHONY: run test install postgres haproxy ops-tools lint bench bench-query soak clean proto fidelity-envs fidelity fuzz sanitize

# The C source is a prerequisite too: `pip install -e` builds the native converter in place.
$(STAMP): pyproject.toml receiver/convert/_fastotlp.c receiver/convert/_fastotlp_signals.c receiver/convert/_genai_rules.c \
          receiver/convert/_otlpjson.c \
          receiver/convert/_jsonwire.c receiver/storage/_pgcopy.c receiver/frontends/_h2grpc.c
	@scripts/ensure-nghttp2
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(STAMP)

postgres:
	@scripts/ensure-postgres

haproxy:  # the load-balancer recipe's test (tests/test_haproxy.py) runs config/haproxy.cfg
	@scripts/ensure-haproxy

# promtool and prometheus (extracted from Debian's package into the venv: no service is started) and
# systemd-analyze: the tests check the alert rules, a real Prometheus and the unit file with them.
ops-tools: install
	@scripts/ensure-prometheus $(VENV)/prometheus
	@scripts/ensure-systemd-analyze

run: install postgres
	OBSERVATORY__LOGGING__FORMAT=$${OBSERVATORY__LOGGING__FORMAT:-console} \
	  $(BIN)/llm-observatory-receiver run --config $(CONFIG)

# The instrumentation libraries the fidelity tests drive, one venv per set of versions (var/fidelity/).
fidelity-envs: install
	@scripts/fidelity-envs

# The fidelity tests alone (part of `make test`); var/fidelity/summary.txt has calls right / total per library.
fidelity: install postgres fidelity-envs
	$(BIN)/pytest -q tests/test_fidelity.py

test: install postgres haproxy ops-tools fidelity-envs
	$(BIN)/ruff check receiver tests benchmarks loadgen
	$(BIN)/pytest -q $(TEST_ARGS)

# Coverage-guided fuzzing (atheris); corpus and failing inputs under var/fuzz/. `make test` runs each target ~3 s.
fuzz: install
	scripts/fuzz $(FUZZ_SECONDS)

# The native extension under AddressSanitizer + UndefinedBehaviorSanitizer: its tests and the fuzz targets.
sanitize: install
	scripts/sanitize $(FUZZ_SECONDS)

bench: install postgres
	$(BIN)/python -m benchmarks.bench --duration $(BENCH_DURATION) --protocol $(BENCH_PROTOCOL) \
	  --exporters $(BENCH_EXPORTERS) --batch-spans $(BENCH_BATCH) $(BENCH_ARGS)

bench-query: install postgres
	$(BIN)/python -m benchmarks.query --rows $(QUERY_ROWS) $(QUERY_ARGS)

soak: install postgres
	$(BIN)/python -m benchmarks.soak --duration $(SOAK_DURATION) --rate $(SOAK_RATE) $(SOAK_ARGS)

lint: install
	$(BIN)/ruff check receiver tests benchmarks loadgen

clean:
	rm -rf $(VENV) var build *.egg-info

proto: install  # regenerate proto/*_pb2.py after editing a .proto
	$(BIN)/pip install -q -e '.[dev]'
	cd proto && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. *.proto
