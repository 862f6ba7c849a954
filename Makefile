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

.PHONY: install run test lint openapi bench clean frontend frontend-deps chromium test-frontend

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python >= 3.11 is required (set PYTHON=python3.x)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

run: install frontend
	$(BIN)/pms serve --with-worker --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest
	$(MAKE) lint
	$(MAKE) test-frontend

# -- the staff web app (frontend/): built into frontend/dist, which the API serves at / -----------------
FRONTEND := frontend
CHROMIUM ?= /usr/bin/chromium

# Runs only when package-lock.json changed since the last install. `npm install` (not `npm ci`): it
# installs the locked versions, and `npm ci` refuses this lock because npm records only this platform's
# optional packages (rollup's native builds) in it.
$(FRONTEND)/node_modules/.installed: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm install --no-audit --no-fund
	@touch $@

frontend-deps: $(FRONTEND)/node_modules/.installed

frontend: frontend-deps
	cd $(FRONTEND) && npm run build

# The end-to-end tests drive the machine's Chromium (never a downloaded browser): install it when missing,
# with a CJK font so that the screenshots of the Chinese screens show characters, not boxes.
chromium:
	@if [ ! -x $(CHROMIUM) ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		echo "Installing Chromium and a CJK font for the end-to-end tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	fi

# Component tests (vitest), then the real stack (API + PostgreSQL + Redis) in Chromium (node --test).
test-frontend: install frontend chromium
	cd $(FRONTEND) && npm test && npm run e2e

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
	rm -rf $(FRONTEND)/dist $(FRONTEND)/test-results
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
