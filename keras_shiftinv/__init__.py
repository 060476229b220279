"""Shift-invariant convolutional networks for Keras 3."""

__version__ = "0.1.0"

from keras_shiftinv import layers, ops  # noqa: E402
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

__all__ = [
    "BlurPool2D",
    "MaxBlurPool2D",
    "CircularPadding2D",
    "OffsetSubsample",
    "PolyphaseDown2D",
    "PolyphaseGather2D",
    "ShiftInvariantDown",
    "layers",
    "ops",
    "__version__",
]
