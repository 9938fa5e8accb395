# Every target sets up what it needs from a fresh clone: a virtual environment holding exactly a lock
# (requirements/*.lock) plus the project, editable; scripts/install.py does it and skips what is already there.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# WHEELHOUSE=DIR: install from a folder `make wheelhouse` filled, asking no index (a classroom offline)
WHEELHOUSE ?=
INSTALL = $(PYTHON) scripts/install.py --venv $(VENV) $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE))

.PHONY: learner dev demo lab app test check lint bench lock wheelhouse browser-deps clean

# demo, lab and app share one workspace, so the demo's runs appear in the dashboard and the notebooks
SHARED_WORKSPACE := $(CURDIR)/workbench-runs

# The learner profile (the chapters and the app) and the developer profile (that plus the test tools and LiteRT)
learner:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@$(INSTALL) learner

dev:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@$(INSTALL) dev

demo: learner
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/workbench demo

# lint: ruff (rules and formatting), the layer contracts of pyproject.toml (import-linter), the venv against its lock
lint: dev
	$(BIN)/ruff check workbench tests scripts
	$(BIN)/ruff format --check workbench tests scripts
	$(BIN)/lint-imports
	$(PYTHON) scripts/install.py check --venv $(VENV)

# Everything CI runs: lint, the whole suite, the chapters and the browser tests. The learner wheelhouse is filled
# here, where the network is allowed (pip download skips what the folder already holds), for the test that
# installs from it with the network refused.
TEST_WHEELHOUSE ?= $(HOME)/.cache/deploy-workbench/wheelhouse-learner
test: lint browser-deps
	$(PYTHON) scripts/install.py wheelhouse $(TEST_WHEELHOUSE)
	WORKBENCH_TEST_WHEELHOUSE=$(TEST_WHEELHOUSE) $(BIN)/python -m pytest -n 2 --dist loadfile

# The inner loop (a few minutes): lint and the suite without the chapters, the browser and the slow tests
check: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not notebook and not browser and not slow" --durations=5

# The browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

bench: dev
	$(BIN)/workbench bench --out bench

# Resolve pyproject.toml anew into requirements/dev.lock and requirements/learner.lock (newest allowed versions)
lock:
	$(PYTHON) scripts/install.py lock --venv $(VENV) $(if $(KEEP),--keep)

# Every wheel of the learner profile in one folder, for laptops that install with WHEELHOUSE=DIR and no network
wheelhouse:
	$(PYTHON) scripts/install.py wheelhouse $(or $(WHEELHOUSE),wheelhouse)

# lab and app: 127.0.0.1 only, behind a token printed with the URL (WORKBENCH_TOKEN, WORKBENCH_CERTFILE and
# WORKBENCH_KEYFILE: see scripts/serve_app.py); tests/test_app_security.py runs the same launcher
lab: learner
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/python scripts/serve_app.py lab --notebook-dir=notebooks

app: learner
	WORKBENCH_WORKSPACE=$(SHARED_WORKSPACE) $(BIN)/python scripts/serve_app.py app --notebook-dir=notebooks

clean:
	rm -rf workbench-runs .pytest_cache
