"""The binomial filter of BlurPool2D and how a blur pads: shared by the portable
ops (`keras_shiftinv.ops`) and TensorFlow's fast path (`keras_shiftinv._blur_tf`),
which both import it and neither imports the other at module level."""

import math

import numpy as np

from keras_shiftinv.validation import standardize_filt_size

# The pad modes in NumPy's words (`np.pad`).
NUMPY_PAD_MODE = {
    "reflect": "reflect",
    "replicate": "edge",
    "zero": "constant",
    "circular": "wrap",
}


def binomial_filter(filt_size):
    """Row `filt_size` of Pascal's triangle, normalised to sum to 1 (float64)."""
    filt_size = standardize_filt_size(filt_size)
    row = np.array([math.comb(filt_size - 1, k) for k in range(filt_size)], "float64")
    return row / row.sum()


def passband_matrix(size):
    """(size, size) float64 matrix `M[i, j] = (1 / 2 pi) * integral over |w| < pi/2
    of exp(-i w (i - j))`: for a 1D filter `h` of `size` taps, `h @ M @ h` is its
    energy in `|w| < pi/2` (and `h @ h` its total energy, by Parseval)."""
    lags = np.subtract.outer(np.arange(size), np.arange(size)).astype("float64")
    safe = np.where(lags == 0, 1.0, lags)
    return np.where(lags == 0, 0.5, np.sin(np.pi * safe / 2) / (np.pi * safe))


def blur_padding(filt_size):
    """(before, after) padding of a `filt_size`-tap blur: (k-1)//2, ceil((k-1)/2)."""
    return (filt_size - 1) // 2, filt_size // 2


def check_pad_fits(size, pad, mode, axis):
    if size is None:
        return
    if mode == "reflect" and max(pad) >= size:
        raise ValueError(
            "pad_mode='reflect' needs a spatial size larger than the padding "
            f"{max(pad)} on axis {axis}. Received: a size of {size}; use a smaller "
            "`filt_size` or pad_mode='replicate'."
        )
