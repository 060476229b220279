from keras_shiftinv.layers.blur_pool2d import BlurPool2D
from keras_shiftinv.layers.circular_padding2d import CircularPadding2D
from keras_shiftinv.layers.max_blur_pool2d import MaxBlurPool2D
from keras_shiftinv.layers.offset_subsample import OffsetSubsample
from keras_shiftinv.layers.polyphase_down2d import PolyphaseDown2D
from keras_shiftinv.layers.polyphase_gather2d import PolyphaseGather2D
from keras_shiftinv.layers.shift_invariant_down import ShiftInvariantDown

__all__ = [
    "BlurPool2D",
    "MaxBlurPool2D",
    "CircularPadding2D",
    "OffsetSubsample",
    "PolyphaseDown2D",
    "PolyphaseGather2D",
    "ShiftInvariantDown",
]
