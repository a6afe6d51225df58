# Two commands do everything on a fresh machine:
#   make up    - create .venv, install tether, run `tether up`
#   make test  - create .venv, install dev tools and the pinned agent programs, run lint,
#                types, import rules and every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: up test lint typecheck imports pytest bench install dev clean docs agents testjs

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tether needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

# The agent programs the tests drive (pinned in tools/agents/package-lock.json), installed
# into tools/agents/node_modules: never a global prefix.
AGENTS_DIR := tools/agents
$(AGENTS_DIR)/node_modules/.installed: $(AGENTS_DIR)/package.json $(AGENTS_DIR)/package-lock.json
	cd $(AGENTS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# axe-core, which the console's browser tests inject to check each view's accessibility
# (pinned in tools/axe/package-lock.json)
AXE_DIR := tools/axe
$(AXE_DIR)/node_modules/.installed: $(AXE_DIR)/package.json $(AXE_DIR)/package-lock.json
	cd $(AXE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev
agents: $(AGENTS_DIR)/node_modules/.installed
testjs: $(AXE_DIR)/node_modules/.installed

up: install
	$(BIN)/tether up

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

imports: dev
	$(BIN)/lint-imports

docs: dev
	$(BIN)/python -m tether.protocol.docs > docs/protocol.md

# pytest exits 5 when a selection collects no tests; that is not a failure of the suite.
pytest: dev agents testjs
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5), treated as success"; exit 0; fi; \
	exit $$rc

test: lint typecheck imports pytest

bench: dev agents testjs
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(AGENTS_DIR)/node_modules $(AXE_DIR)/node_modules
