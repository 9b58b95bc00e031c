# Each target does its own set-up, so it works on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test lint bench demo

install:
	$(PIP) install -q -e ".[dev]"

test: install
	$(PYTHON) -m pytest

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: install
	$(PYTHON) -m pytest benchmarks --benchmark-enable --benchmark-only

demo: install
	$(PYTHON) -m fastrft demo
