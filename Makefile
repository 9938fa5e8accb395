# Every target sets up what it needs from a fresh clone: a virtual environment with the project installed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LITERT_STAMP := $(VENV)/.litert-stamp

.PHONY: venv demo test lint lab app bench browser-deps clean

# demo, lab and app share one workspace, so the demo's runs appear in the dashboard and the notebooks
SHARED_WORKSPACE := $(CURDIR)/workbench-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[all,test]'
	touch $@

# LiteRT (TFLite) export and interpreter, for the tests and the bench only (about 1 GB, so not in `venv`).
# litert-converter 0.5 pins xdsl 0.28, which caps typing-extensions below 4.13; jupyter_client 8.10 does not import
# with that (TypedDict extra_items), so the versions `.[all,test]` installed are put back (xdsl runs with them).
$(LITERT_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[litert]'
	$(BIN)/pip install --quiet --disable-pip-version-check 'typing-extensions>=4.16' 'anyio>=4.16'
	touch $@

demo: $(STAMP)
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/workbench demo

# lint: ruff (rules and formatting) and the layer contracts of pyproject.toml (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check workbench tests scripts
	$(BIN)/ruff format --check workbench tests scripts
	$(BIN)/lint-imports

test: lint browser-deps $(LITERT_STAMP)
	$(BIN)/python -m pytest

# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

bench: $(STAMP) $(LITERT_STAMP)
	$(BIN)/workbench bench --out bench

# lab and app: 127.0.0.1 only, behind a token printed with the URL (WORKBENCH_TOKEN, WORKBENCH_CERTFILE and
# WORKBENCH_KEYFILE: see scripts/serve_app.py); tests/test_app_security.py runs the same launcher
lab: $(STAMP)
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/python scripts/serve_app.py lab --notebook-dir=notebooks

app: $(STAMP)
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/python scripts/serve_app.py app --notebook-dir=notebooks

clean:
	rm -rf workbench-runs .pytest_cache
