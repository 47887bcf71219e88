# bqxdask — the two set-up commands are `make features` and `make test`.
# Both bootstrap .venv from nothing (Python >= 3.10 and make are all that is needed).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bqxdask-installed
CONFIG ?= configs/default.toml
PYTEST_ARGS ?=

.PHONY: features test test-fast test-slow test-all bench bench-scale lint db-start db-stop clean venv

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# The demo: start the embedded PostgreSQL, seed demo bars if the database is empty, run the pipeline.
features: $(STAMP)
	$(BIN)/bqxdask db start --config $(CONFIG)
	$(BIN)/bqxdask seed --config $(CONFIG) --if-empty
	$(BIN)/bqxdask features --config $(CONFIG)

# The whole suite except the tests marked slow (crash-safety with kill -9, external Dask
# processes, long partition runs): ~6 minutes on 2 cores. CI runs both (.ci/run).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# No PostgreSQL, no Dask cluster, nothing slow (markers set in tests/conftest.py): about a minute on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not db and not cluster and not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# 28 pairs × one month, seeded, as an operator runs it (configs/production.toml, 2 workers): ~2 min
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py

lint: $(STAMP)
	$(BIN)/ruff check bqxdask tests benchmarks
	$(BIN)/ruff format --check bqxdask tests benchmarks

db-start: $(STAMP)
	$(BIN)/bqxdask db start --config $(CONFIG)

db-stop: $(STAMP)
	$(BIN)/bqxdask db stop --config $(CONFIG)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
