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
	$(PY) -m pip install --quiet -c constraints.txt -e ".[tf-cpu,dev,interop,deploy]"
	touch $@

# The quick Fashion-MNIST run (installs the data with apt-get if missing and root);
# `make train ARGS="--epochs 10"` passes options on.
train: setup
	$(PY) -m keras_shiftinv train $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The whole suite on TensorFlow, then the layer and zoo tests again on JAX and on
# PyTorch (training, data and export are TensorFlow: marked tf_only).
BACKEND_TESTS := tests/layers tests/zoo

test: setup lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow and not tf_only" $(BACKEND_TESTS)
	KERAS_BACKEND=torch $(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow and not tf_only" $(BACKEND_TESTS)

test-slow: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow tests

bench: setup
	$(PY) benchmarks/bench_layers.py
