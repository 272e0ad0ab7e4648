# The two commands that matter: `make demo` and `make test`. Both set themselves up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SYNCED := $(VENV)/.synced
PYTEST_ARGS ?=

.PHONY: setup up down status demo test test-unit test-integration test-contract test-e2e bench lint lock clean

setup: $(SYNCED)

$(SYNCED): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python 3.11 or newer is needed (found: $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q "uv==0.13.9"
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.txt
	@touch $@

# Re-pin every package (direct and transitive) from requirements.in.
lock: $(SYNCED)
	$(VENV)/bin/uv pip compile -q requirements.in --python-version 3.11 -o requirements.txt

up: setup
	$(PY) -m devstack.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack down; else echo "nothing was running"; fi

status: setup
	$(PY) -m devstack.stack status

demo: setup
	$(PY) -m devstack.demo

test: setup
	$(PY) -m devstack.checks postgres rabbitmq redis
	$(PY) -m pytest tests/unit tests/integration tests/contract tests/e2e tests/security $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest tests/integration tests/contract $(PYTEST_ARGS)

test-e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run

lint: setup
	$(VENV)/bin/ruff check .

clean: down
	rm -rf .local
