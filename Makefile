# `make check` runs every check: lint, format, types and the whole test suite.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install check lint test quick-test serve

$(BIN)/activate:
	python3 -m venv $(VENV)

install: $(BIN)/activate
	$(BIN)/pip install -q -e ".[test,dev]"
	npm ci --prefix tests/node

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test:
	$(BIN)/python -m pytest

quick-test:
	$(BIN)/python -m pytest -m "not slow"

check: install lint test

serve:
	$(BIN)/gunicorn wsgi:app
