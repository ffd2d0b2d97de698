# One-command set-up on a fresh machine with Python 3.11, Node/npm and make.
#   make test   - create .venv, install Python + npm deps, lint, run the whole suite (starts Azurite itself)
#   make demo   - run the bundled demo scenario on the embedded emulator
#   make sandbox - keep the emulator, Azurite and the app running (SCENARIO=... seeds it); prints the settings
#   make bench  - run the benchmarks and regenerate docs/benchmarks.md
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov in its own environment: it pins pycep-parser 0.5.1 and an old packaging that the dev venv's pytest refuses.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: setup test lint demo sandbox bench chaos clean lock

$(PY_STAMP): requirements.in requirements.txt requirements-dev.txt pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (found %s); set PY=/path/to/python3.11" % sys.version.split()[0]'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	@touch $@

setup: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

lint: $(PY_STAMP)
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadgroup

demo: setup
	$(BIN)/python -m autopilot simulate scenarios/demo.json --report out/demo/report.json

# The emulator, Azurite and the app left running for status / plan / reconcile / replay from another shell.
#   make sandbox [SCENARIO=scenarios/demo.json]
sandbox: setup
	$(BIN)/python -m autopilot sandbox $(SCENARIO)

bench: setup
	$(BIN)/python -m bench

chaos: setup
	AUTOPILOT_CHAOS=long $(BIN)/python -m pytest tests/reliability

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules out .pytest_cache .ruff_cache .hypothesis

# Regenerate the deployed, hashed requirements.txt from requirements.in (on Linux x86_64, Python 3.11).
lock: $(PY_STAMP)
	$(BIN)/python tools/lock_requirements.py
