"""Small zoo models for the tests: 32x32 inputs, 1/16 of the widths, 3 classes."""

import keras
import numpy as np

import zoo

SIZE = 32
NUM_CLASSES = 3


def small_model(name, variant="baseline", **kwargs):
    kwargs = {
        "variant": variant,
        "num_classes": NUM_CLASSES,
        "input_shape": (SIZE, SIZE, 3),
        "width_multiplier": 1 / 16,
        **kwargs,
    }
    if name.startswith("resnet"):
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
