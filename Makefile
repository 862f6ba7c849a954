# Developer entry points. `make run` needs nothing but Python >= 3.11: without DATABASE_URL it starts an
# embedded PostgreSQL under $(PMS_DATA_DIR) (default var/), without REDIS_URL an embedded Redis there too,
# and runs the API with `pms worker` beside it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip runs only when pyproject.toml changed since the last install, so repeated `make` calls are fast.
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint openapi bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python >= 3.11 is required (set PYTHON=python3.x)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/pms serve --with-worker --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest
	$(MAKE) lint

lint: install
	$(BIN)/ruff check
	$(BIN)/mypy

openapi: install
	$(BIN)/python -m pms.openapi_dump

bench: install
	@if [ -f bench/run_all.py ]; then $(BIN)/python bench/run_all.py; \
	else echo "bench/run_all.py does not exist yet: nothing to run"; fi

# Leaves var/ (the embedded database's data) and .venv alone.
clean:
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
