# The two entry points of the README: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The PostgreSQL server the storage tests also run on (set it empty to skip those tests).
TWEETCHAT_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TWEETCHAT_TEST_POSTGRES_URL
# The Redis server the multi-process tests use (set it empty to skip them).
TWEETCHAT_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
export TWEETCHAT_TEST_REDIS_URL

.PHONY: setup demo test lint benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/tweetchat demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (never a downloaded one): install it when missing.
test: lint
	@command -v chromium >/dev/null || { \
	  echo "make test: installing Chromium (Debian's package) for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/pytest

# The speed figures of docs/benchmarks.md: ingest, update cost against size, WebSocket fan-out.
# Each prints one JSON line and one line of text; the whole run takes about half an hour.
benchmark: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/update_cost.py
	$(BIN)/python benchmarks/fanout.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis tweetchat-demo.db*
