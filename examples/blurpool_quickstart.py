"""How much does a one-pixel shift change a pooled feature map?

Compares keras.layers.MaxPooling2D with MaxBlurPool2D on random images: the relative
change of the output when the input is circularly shifted by one pixel and the output
shifted back by the stride's share (an exactly equivariant layer would score 0).
"""

import keras
import numpy as np

from keras_shiftinv import MaxBlurPool2D


def shift_error(layer, x):
    y = keras.ops.convert_to_numpy(layer(x))
    y2 = keras.ops.convert_to_numpy(layer(np.roll(x, 2, axis=1)))
    y1 = keras.ops.convert_to_numpy(layer(np.roll(x, 1, axis=1)))
    # A shift by 2 must move the output by 1; a shift by 1 falls between samples, so
    # it is compared with the mean of its two neighbours.
    even = np.abs(y2 - np.roll(y, 1, axis=1)).mean() / np.abs(y).mean()
    odd = np.abs(y1 - 0.5 * (y + np.roll(y, 1, axis=1))).mean() / np.abs(y).mean()
    return even, odd


def main():
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")
    print(f"{'layer':28s} {'shift 2 err':>12s} {'shift 1 err':>12s}")
    for name, layer in [
        ("MaxPooling2D(2)", keras.layers.MaxPooling2D(2, padding="same")),
        ("MaxBlurPool2D(filt_size=4)", MaxBlurPool2D(filt_size=4, pad_mode="circular")),
    ]:
        even, odd = shift_error(layer, x)
        print(f"{name:28s} {even:12.4f} {odd:12.4f}")


if __name__ == "__main__":
    main()
