# The whole set-up is two commands: `make run` (serve on 4317/4318 with an embedded PostgreSQL)
# and `make test` (the suite against throwaway PostgreSQL clusters). Both install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/receiver.toml

.PHONY: run test install postgres lint bench clean proto

# The C source is a prerequisite too: `pip install -e` builds the native converter in place.
$(STAMP): pyproject.toml receiver/convert/_fastotlp.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(STAMP)

postgres:
	@scripts/ensure-postgres

run: install postgres
	OBSERVATORY__LOGGING__FORMAT=$${OBSERVATORY__LOGGING__FORMAT:-console} \
	  $(BIN)/llm-observatory-receiver run --config $(CONFIG)

test: install postgres
	$(BIN)/ruff check receiver tests benchmarks
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check receiver tests benchmarks

clean:
	rm -rf $(VENV) var build *.egg-info

proto: install  # regenerate proto/*_pb2.py after editing a .proto
	$(BIN)/pip install -q -e '.[dev]'
	cd proto && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. *.proto
