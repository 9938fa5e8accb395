# Every target sets up what it needs from a fresh clone: a virtual environment with the project installed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv demo test lint lab app bench browser-deps clean

# demo, lab and app share one workspace, so the demo's runs appear in the dashboard and the notebooks
SHARED_WORKSPACE := $(CURDIR)/workbench-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[all,test]'
	touch $@

demo: $(STAMP)
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/workbench demo

# lint: ruff (rules and formatting) and the layer contracts of pyproject.toml (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check workbench tests
	$(BIN)/ruff format --check workbench tests
	$(BIN)/lint-imports

test: lint browser-deps
	$(BIN)/python -m pytest

# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

bench: $(STAMP)
	$(BIN)/workbench bench --out bench

lab: $(STAMP)
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/jupyter lab --notebook-dir=notebooks --no-browser $(ROOT_FLAG)

app: $(STAMP)
	cd notebooks && WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(abspath $(BIN))/voila app.ipynb --no-browser \
	  --Voila.ip=127.0.0.1

clean:
	rm -rf workbench-runs .pytest_cache
