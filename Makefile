# agentfence: `make demo` and `make test` each set up .venv themselves on a fresh machine
# with Python 3.11+ and make. Versions are pinned in constraints.txt for repeatable runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit bench clean browser sqlite-cli postgres-start postgres-stop

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentfence needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/agentfence demo

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

# The inbox's browser tests drive Debian's Chromium (no browser download is possible here);
# install it when it is missing and we may (root, apt), and make the tests required.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the inbox browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is missing and cannot be installed here (need root and apt-get)"; exit 1; \
	  fi; }

# The docs' auditor walk-through (run by tests/integration/test_docs_run.py) copies and
# tampers with a log using SQLite's command-line shell; install it when it is missing.
sqlite-cli:
	@command -v sqlite3 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's sqlite3 for the docs walk-through tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3; \
	  else \
	    echo "sqlite3 is missing and cannot be installed here (need root and apt-get)"; exit 1; \
	  fi; }

# The PostgreSQL backend's tests run against a throwaway cluster under build/pg (installed from
# Debian's packages when missing), started here and stopped afterwards. They are required:
# only an explicit AGENTFENCE_SKIP_POSTGRES=1 skips them, and says so loudly.
AGENTFENCE_SKIP_POSTGRES ?=

unit: install browser sqlite-cli
	@if [ "$(AGENTFENCE_SKIP_POSTGRES)" = 1 ]; then \
	  echo "################################################################################"; \
	  echo "# AGENTFENCE_SKIP_POSTGRES=1: the PostgreSQL backend tests are SKIPPED.        #"; \
	  echo "# This run does not check the PostgreSQL log, approvals or fault tests.        #"; \
	  echo "################################################################################"; \
	  AGENTFENCE_BROWSER_TESTS=required AGENTFENCE_POSTGRES_TESTS=skip $(BIN)/pytest -q -n 2; \
	else \
	  url="$$(scripts/postgres.sh start)" || exit 1; \
	  status=0; \
	  AGENTFENCE_BROWSER_TESTS=required AGENTFENCE_POSTGRES_TESTS=required \
	    AGENTFENCE_TEST_POSTGRES_URL="$$url" $(BIN)/pytest -q -n 2 || status=$$?; \
	  scripts/postgres.sh stop; \
	  exit $$status; \
	fi

postgres-start:
	scripts/postgres.sh start

postgres-stop:
	scripts/postgres.sh stop

test: lint unit

# Every benchmark, each rewriting its own section of docs/performance.md; the PostgreSQL one
# runs against the throwaway cluster, which is stopped afterwards as `make test` does.
bench: install
	$(BIN)/python benchmarks/bench_decide.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_agent.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_log.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_memory.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_provenance.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_injection.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_mcp.py --write docs/performance.md
	$(BIN)/python benchmarks/bench_identity.py
	@url="$$(scripts/postgres.sh start)" || exit 1; \
	  status=0; \
	  $(BIN)/python benchmarks/bench_postgres.py --write docs/performance.md || status=$$?; \
	  scripts/postgres.sh stop; \
	  exit $$status

clean:
	scripts/postgres.sh stop
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
