# `make train` and `make test` are README's two commands; each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: setup train test test-slow lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[tf-cpu,dev]"
	touch $@

train: setup
	$(PY) examples/blurpool_quickstart.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The whole suite on TensorFlow, then the layer tests again on JAX.
test: setup lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow and not tf_only" tests/layers

test-slow: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow tests

bench: setup
	$(PY) benchmarks/bench_layers.py
