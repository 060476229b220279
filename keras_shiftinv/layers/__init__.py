from keras_shiftinv.layers.blur_pool2d import BlurPool2D
from keras_shiftinv.layers.max_blur_pool2d import MaxBlurPool2D

__all__ = ["BlurPool2D", "MaxBlurPool2D"]
