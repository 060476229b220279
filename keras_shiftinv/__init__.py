"""Shift-invariant convolutional networks for Keras 3."""

import importlib

__version__ = "0.1.0"

from keras_shiftinv import layers, ops  # noqa: E402
from keras_shiftinv.convert import antialias  # noqa: E402
from keras_shiftinv.layers import (  # noqa: E402
    BlurPool2D,
    CircularPadding2D,
    MaxBlurPool2D,
    OffsetSubsample,
    PolyphaseDown2D,
    PolyphaseGather2D,
    ShiftInvariantDown,
)
from keras_shiftinv.schedules import CyclicLR  # noqa: E402, F401  (registered for loading)

# These need TensorFlow (tf.data, tf.distribute, SavedModel): they are imported on
# first use, so `import keras_shiftinv` stays light on the JAX backend.
_LAZY_SUBMODULES = ("callbacks", "data", "evaluate", "export", "metrics", "training")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_shiftinv.{name}")
    raise AttributeError(f"module 'keras_shiftinv' has no attribute {name!r}")


__all__ = [
    "BlurPool2D",
    "MaxBlurPool2D",
    "CircularPadding2D",
    "OffsetSubsample",
    "PolyphaseDown2D",
    "PolyphaseGather2D",
    "ShiftInvariantDown",
    "antialias",
    "layers",
    "ops",
    "__version__",
]
