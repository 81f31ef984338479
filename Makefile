# The few verbs a person needs. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
# Keep Python's bytecode caches even where the environment turns them off: every CLI, Dagster and
# dbt process imports Dagster, dbt and Great Expectations, which takes twice as long compiled afresh.
RUN := env -u PYTHONDONTWRITEBYTECODE $(UV) run --frozen

.PHONY: setup demo test test-interop lint format ui clean

setup: .venv/.synced kafka-jars

.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	# Compiled once here, the libraries' bytecode serves every process, even one started where
	# PYTHONDONTWRITEBYTECODE is set: each dbt invocation would otherwise compile dbt afresh (1 s).
	$(UV) sync --frozen --compile-bytecode
	@touch $@

.PHONY: kafka-jars
kafka-jars: .venv/.synced
	@$(UV) run --frozen python -m ingestion.local_kafka

demo: setup
	$(RUN) lakehouse demo

# The tests run in two processes side by side (one per core: they wait on brokers, Dagster and
# dbt as much as they compute), a test file to a process, each with its own broker; those marked
# serial then run alone. Exit status 5 is pytest's "no test selected" (PYTEST_ARGS chose none).
PYTEST_WORKERS ?= 2
test: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(RUN) pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Other engines read the lake: Spark (pyspark, 456 MB, only in the uv group interop) over its catalog.
# `uv run` adds the group without removing anything, and `make test` ignores tests/interop.
test-interop: setup
	$(RUN) --group interop python -m ingestion.spark >/dev/null
	$(RUN) --group interop pytest tests/interop $(PYTEST_ARGS)

lint:
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format:
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

ui: setup
	$(RUN) lakehouse ui

clean:
	rm -rf data_lake/* .pytest_cache .ruff_cache
