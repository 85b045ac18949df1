# Two commands on a fresh machine with Python 3.11 and make: `make serve`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PROTOC_OPTS := client_generation=async,server_generation=async,google_protobuf_descriptors

.PHONY: serve test test-slow lint typecheck unit proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Flags for `govc serve` go in ARGS: make serve ARGS="--grpc-port 9191"
serve: $(STAMP)
	$(BIN)/govc serve $(ARGS)

# The checks, and every test not marked slow; the slow ones (long-running) run in test-slow.
test: $(STAMP) lint typecheck unit

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check govc tests benchmarks
	$(BIN)/ruff format --check govc tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# Regenerate generated/ from protos/ (betterproto2; protoc from grpcio-tools).
proto: $(STAMP)
	rm -rf generated
	mkdir -p generated
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_betterproto2_out=generated \
		--python_betterproto2_opt=$(PROTOC_OPTS) protos/govc.proto

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) govc-data .pytest_cache .mypy_cache .ruff_cache
