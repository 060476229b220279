"""Small zoo models for the tests: 32x32 inputs, 1/16 of the widths, 3 classes."""

import keras
import numpy as np
import pytest

import zoo

SIZE = 32
NUM_CLASSES = 3

# CI runs the zoo tests on TensorFlow, JAX and PyTorch. On JAX and PyTorch a model
# test costs 3-5x TensorFlow's (eager fit steps), so there the option combinations
# run only when asked (`-m slow`); every variant of each block type still runs.
OTHER_BACKEND = keras.backend.backend() != "tensorflow"


def slow_on_other_backends(test):
    return pytest.mark.slow(test) if OTHER_BACKEND else test


def small_model(name, variant="baseline", **kwargs):
    kwargs = {
        "variant": variant,
        "num_classes": NUM_CLASSES,
        "input_shape": (SIZE, SIZE, 3),
        "width_multiplier": 1 / 16,
        **kwargs,
    }
    if zoo.model_spec(name).has_stem:
        kwargs.setdefault("stem", "cifar")
    keras.utils.set_random_seed(0)
    return zoo.create_model(name, **kwargs)


def images(batch=4, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, size, size, 3)).astype("float32")


def predict(model, x):
    """Inference-mode outputs, eagerly (tracing `predict` costs more than it saves
    for a handful of calls)."""
    return keras.ops.convert_to_numpy(model(x, training=False))
