"""Shift-invariant convolutional networks for Keras 3."""

__version__ = "0.1.0"

from keras_shiftinv import layers, ops  # noqa: E402
from keras_shiftinv.layers import BlurPool2D, MaxBlurPool2D  # noqa: E402
from keras_shiftinv.schedules import CyclicLR  # noqa: E402, F401  (registered for loading)

__all__ = ["BlurPool2D", "MaxBlurPool2D", "layers", "ops", "__version__"]
