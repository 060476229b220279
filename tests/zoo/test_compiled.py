"""Zoo models compiled by XLA train and predict as TensorFlow without XLA does:
`jit_compile=True` on TensorFlow, and JAX (which always compiles with XLA) from
the same initial weights, against TensorFlow's numbers (computed in a TensorFlow
subprocess for the JAX run). Logits and weights after one SGD step within 1e-4 of
their largest value (float32 sums in other orders, through one training step).
By default a small `antialias()` network (its blur layers at their default
padding failed under XLA; an XLA compile of a ResNet-18 step takes 30-80 s here);
`-m slow` runs every case of tests/zoo/cases.py. tests/layers/test_xla.py
compiles every layer by default."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.zoo.cases import ZOO_CASES, fit_and_predict, zoo_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = ["antialias"]
TOLERANCE = 1e-4
BACKEND = keras.backend.backend()


def _close(got, want, what, scale=None):
    scale = np.abs(want).max() if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE * scale, err_msg=what)


def _compare(got, want, initial):
    before, weights, after = got
    want_before, want_weights, want_after = want
    _close(before, want_before, "logits")
    # The step's updates, each within 1e-4 of the largest: the updates of biases
    # before a batch normalization (a zero gradient, in theory) are rounding noise.
    updates = [w - w0 for w, w0 in zip(weights, initial, strict=True)]
    want_updates = [w - w0 for w, w0 in zip(want_weights, initial, strict=True)]
    scale = max(np.abs(u).max() for u in want_updates)
    assert scale > 0
    for i, (u, v) in enumerate(zip(updates, want_updates, strict=True)):
        _close(u, v, f"update of weight {i}", scale)
    _close(after, want_after, "logits after a step")


def _xla_test(name):
    model = zoo_model(name)
    initial = model.get_weights()
    want = fit_and_predict(model, jit_compile=False)
    model.set_weights(initial)
    _compare(fit_and_predict(model, jit_compile=True), want, initial)


@pytest.mark.tf_only
@pytest.mark.parametrize("name", DEFAULT)
def test_xla_fit_and_predict_match_tensorflow(name):
    _xla_test(name)


@pytest.mark.slow
@pytest.mark.tf_only
@pytest.mark.parametrize("name", [n for n in ZOO_CASES if n not in DEFAULT])
def test_xla_fit_and_predict_match_tensorflow_every_case(name):
    _xla_test(name)


def _tensorflow_reference(directory, names):
    path = os.path.join(directory, "reference.npz")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": ROOT}
    subprocess.run(
        [sys.executable, "-m", "tests.zoo.cases", path, *names],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    return np.load(path)


def _jax_test(reference, name):
    model = zoo_model(name)
    count = len(model.weights)
    initial = [reference[f"{name}:init:{i}"] for i in range(count)]
    model.set_weights(initial)
    want = (
        reference[f"{name}:before"],
        [reference[f"{name}:fit:{i}"] for i in range(count)],
        reference[f"{name}:after"],
    )
    _compare(fit_and_predict(model, jit_compile=True), want, initial)


@pytest.fixture(scope="module")
def default_reference(tmp_path_factory):
    return _tensorflow_reference(tmp_path_factory.mktemp("tf"), DEFAULT)


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX run of the suite")
@pytest.mark.parametrize("name", DEFAULT)
def test_jax_fit_and_predict_match_tensorflow(default_reference, name):
    _jax_test(default_reference, name)


@pytest.fixture(scope="module")
def every_reference(tmp_path_factory):
    names = [n for n in ZOO_CASES if n not in DEFAULT]
    return _tensorflow_reference(tmp_path_factory.mktemp("tf-all"), names)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="the JAX run of the suite")
@pytest.mark.parametrize("name", [n for n in ZOO_CASES if n not in DEFAULT])
def test_jax_fit_and_predict_match_tensorflow_every_case(every_reference, name):
    _jax_test(every_reference, name)
