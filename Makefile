# Developer entry points for trio-openhands. `make` (or `make help`) lists them.
# Everything goes through uv with --frozen: uv.lock is the source of truth and is never
# rewritten behind your back (run `uv lock` yourself after editing pyproject.toml).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# Never let uv fetch a CPython build: only registries are reachable, and we want the
# machine's Python 3.12 (pyenv's, found on PATH via .python-version).
export UV_PYTHON_DOWNLOADS := never
# Trust the system certificate store (as pip here does): with uv's bundled roots, a machine
# whose registry traffic passes a local CA fails to download unless SSL_CERT_FILE is set.
export UV_SYSTEM_CERTS ?= 1
# Compile every installed module to bytecode at install time: where PYTHONDONTWRITEBYTECODE
# is set (as on this kind of machine), each process would otherwise compile the SDK and
# litellm from source at every import, and the suite starts a dozen server processes.
export UV_COMPILE_BYTECODE ?= 1

# PYTHON and UV_VERSION are only used to bootstrap .tools/ when uv is not on PATH.
PYTHON     ?= python3
UV_VERSION ?= 0.13.9
TOOLS      := .tools
# uv from PATH if there is one, else a private copy in .tools/ (built by the rule below).
# (`make UV=/path/to/uv` overrides; := so the PATH lookup runs once, not per use.)
ifndef UV
UV := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)
endif

HOST        ?= 127.0.0.1
PORT        ?= 8000
ARGS        ?=
PYTEST_ARGS ?=
FUZZ_ARGS   ?=
# Most tests wait on sockets, subprocesses and scripted LLM delays, not the CPU: on two
# cores, three xdist workers keep both busy (make test, quiet machine: 145 s with 3, 163 s
# with 2, measured 2026-12-01). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 3
# The standalone-executable test (tests/test_binary.py) needs a PyInstaller build of minutes:
# `make test` skips it; `make test SKIP_BINARY=0` runs it too (building dist/ if missing);
# `make check-binary` builds and runs only it.
SKIP_BINARY ?= 1

.PHONY: help install install-dev install-pre-commit-hooks test test-postgres test-e2e lint format run demo bench \
        fuzz binary check-binary clean distclean check-python check-lock print-uv test-ui test-ts-client ui \
        install-postgres check-postgres

help: ## List targets (this message)
	@echo "Usage: make <target> [PYTEST_ARGS=...] [ARGS=...] [HOST=...] [PORT=...]"
	@awk -F':.*## ' '/^[a-zA-Z_-]+:.*## / {printf "  %-26s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- tooling ---------------------------------------------------------------------------

# Bootstrap uv from PyPI with pip (no curl installers here). Output goes to stderr so that
# `print-uv` (used by scripts/uv) prints only the path on stdout.
$(TOOLS)/bin/uv:
	@echo ">> uv not found on PATH; installing uv==$(UV_VERSION) into $(TOOLS)/ with pip" >&2
	@$(PYTHON) -m venv $(TOOLS) >&2
	@$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)" >&2

print-uv: $(UV) ## Print the path of the uv used here (installing it if needed)
	@echo "$(abspath $(UV))"

# uv would fail anyway without 3.12, but with a less helpful message.
check-python: $(UV)
	@$(UV) python find >/dev/null 2>&1 || { \
	  echo "error: no Python 3.12 found on PATH (uv is told never to download one)." >&2; \
	  echo "  If pyenv has it ('pyenv versions'), put pyenv's shims on PATH: eval \"\$$(pyenv init -)\"" >&2; \
	  echo "  else install one ('pyenv install 3.12'), or name it: make ... UV_PYTHON=/path/to/python3.12" >&2; \
	  exit 1; }

check-lock: $(UV) ## Check that uv.lock matches pyproject.toml (needs the registry)
	$(UV) lock --check

# --- install (uv sync is a no-op taking milliseconds when .venv is already in sync) ----------

install: check-python ## Install runtime dependencies only into .venv
	$(UV) sync --frozen --no-dev

install-dev: check-python ## Install runtime + dev dependencies into .venv
	$(UV) sync --frozen

install-pre-commit-hooks: install-dev ## Install the git pre-commit hook (ruff + pyright)
	$(UV) run --frozen pre-commit install

# --- everyday tasks --------------------------------------------------------------------
# `uv run` syncs inexactly: it installs whatever is missing and removes nothing.

test: check-python check-postgres ## Run the tests but the binary's (PYTEST_ARGS="-x -k name" to pass options)
	@rc=0; SKIP_BINARY=$(SKIP_BINARY) $(UV) run --frozen pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): treated as a failure" >&2; fi; \
	exit $$rc

# `make test` runs every test over the files store, and each one that reaches the store
# over PostgreSQL too; `make test-postgres` runs the whole suite over PostgreSQL alone
# (the tests marked store_independent included). CI runs both.
test-postgres: check-python check-postgres ## Run the whole suite with the server over PostgreSQL only
	@rc=0; OPENHANDS_TEST_STORES=postgres SKIP_BINARY=$(SKIP_BINARY) $(UV) run --frozen pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): treated as a failure" >&2; fi; \
	exit $$rc

test-e2e: check-python ## Run the slow end-to-end checks (tests/e2e/: kill -9 mid-burst, five rounds; a few minutes)
	$(UV) run --frozen pytest -m e2e tests/e2e $(PYTEST_ARGS) -s

# The PostgreSQL store's tests start a throwaway cluster from the machine's own server
# binaries (tests/postgres_cluster.py): Debian's postgresql package, found through
# `pg_config --bindir` or under /usr/lib/postgresql/*/bin. Without them those tests are
# skipped; CI installs the package first (`make install-postgres`), so there they always run.
PG_HAS_INITDB = { bindir="$$(pg_config --bindir 2>/dev/null || true)"; [ -n "$$bindir" ] && [ -x "$$bindir/initdb" ] \
	|| compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

check-postgres:
	@$(PG_HAS_INITDB) || echo "note: no PostgreSQL server binaries (initdb): the PostgreSQL store's tests will be skipped; make install-postgres (Debian's postgresql package) installs them" >&2

install-postgres: ## Install Debian's postgresql package (the store tests' initdb and pg_ctl) if missing
	@if ! $(PG_HAS_INITDB); then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y postgresql || { apt-get update && apt-get install -y postgresql; }; \
	  else echo "error: no PostgreSQL server binaries: install Debian's postgresql package (apt-get install postgresql)" >&2; exit 1; fi; \
	fi

lint: check-python ## Run all pre-commit hooks on all files (ruff check, ruff format --check, pyright)
	$(UV) run --frozen pre-commit run --all-files --show-diff-on-failure

# Fix first, then format: fixes (e.g. added imports) can leave code unformatted.
format: check-python ## Apply ruff's safe fixes, then format the code
	$(UV) run --frozen ruff check --fix
	$(UV) run --frozen ruff format

# --no-dev: serve with runtime dependencies only (dev ones already installed are left alone).
run: check-python ## Start the server on HOST:PORT (default 127.0.0.1:8000; ARGS=... for more)
	$(UV) run --frozen --no-dev openhands-server --host $(HOST) --port $(PORT) $(ARGS)

demo: check-python ## Run the demo (openhands-server demo)
	$(UV) run --frozen --no-dev openhands-server demo $(ARGS)

# Not part of `make test`: minutes, not seconds. Loopback only (a private network namespace
# where the kernel allows one); it stops by itself. scripts/fuzz.py says what it does.
fuzz: check-python ## Fuzz the API with schemathesis on a real server, every check (FUZZ_ARGS=...)
	$(UV) run --frozen python scripts/fuzz.py $(FUZZ_ARGS)

# The official web UI driven in Debian's Chromium (never a downloaded browser): installs
# ui-test/'s npm packages (package-lock.json) when they changed; not part of `make test`.
CHROMIUM ?= /usr/bin/chromium

test-ui: install-dev ui-test/node_modules/.package-lock.json ## Drive the official web UI against the server in Chromium; screenshots in build/ui/
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y chromium; \
	  else echo "error: no Chromium at $(CHROMIUM): apt-get install chromium, or CHROMIUM=/path" >&2; exit 1; fi; \
	fi
	PYTHON=$(abspath .venv/bin/python) CHROMIUM=$(CHROMIUM) node ui-test/run.mjs

test-ts-client: install-dev ui-test/node_modules/.package-lock.json ## Drive the official TypeScript client from Node against the server
	PYTHON=$(abspath .venv/bin/python) node ui-test/ts-client.mjs

UI_PORT ?= 3000

ui: ui-test/node_modules/.package-lock.json ## Serve the official web UI (frontend only) on UI_PORT (3000); add this server as its backend
	node ui-test/node_modules/@openhands/agent-canvas/bin/agent-canvas.mjs --frontend-only --port $(UI_PORT)

# Two of agent-canvas 1.6.1's pinned dependencies are not on the registry any more:
# package.json overrides them with the nearest published versions.
ui-test/node_modules/.package-lock.json: ui-test/package.json ui-test/package-lock.json
	@command -v npm >/dev/null || { echo "error: make test-ui needs Node.js 20 and npm" >&2; exit 1; }
	cd ui-test && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

bench: check-python ## Run every bench/*.py (but the shared bench/_*.py)
	@shopt -s nullglob; files=(bench/[!_]*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no bench/*.py found"; exit 0; fi; \
	for f in "$${files[@]}"; do echo ">> $$f"; $(UV) run --frozen python "$$f"; done

# --- the standalone executable --------------------------------------------------------

binary: check-python ## Build dist/openhands-server with PyInstaller (installs it first)
	./build.sh --install-pyinstaller

check-binary: binary ## Build dist/openhands-server, then test it (tests/test_binary.py)
	SKIP_BINARY=0 $(UV) run --frozen pytest -m binary $(PYTEST_ARGS)

# --- cleanup ---------------------------------------------------------------------------

clean: ## Remove caches and build outputs (keeps .venv and .tools)
	rm -rf .pytest_cache .ruff_cache dist build
	find . -path ./.venv -prune -o -path ./.tools -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## Also remove .venv and .tools
	rm -rf .venv $(TOOLS)
