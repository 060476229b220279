"""Initializers of the package's learned layers."""

import math

import keras
import numpy as np

from keras_shiftinv.filters import binomial_filter
from keras_shiftinv.validation import standardize_filt_size


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class LowPass(keras.initializers.Initializer):
    """Starts a `ShiftInvariantDown` module as a binomial low-pass filter.

    Pass it (or the string "lowpass", which means `LowPass(filt_size=4)`) as the
    `kernel_initializer` of `ShiftInvariantDown`. The module then computes at
    initialisation what `BlurPool2D(filt_size)` computes (with the module's
    `pad_mode`), followed by a 1x1 convolution: the identity when `filters`
    equals the input channels, otherwise a 1x1 kernel drawn like Keras' default
    (Glorot uniform); exactly, except for branch "conv3d" with fewer than twice
    as many filters as input channels, which starts from the closest filter its
    form allows (below). Training starts from Zhang's fixed anti-aliasing filter and
    learns the aggregation from there, instead of from random kernels that are
    mostly high-pass.

    Branch "group": every grouped kernel of input channel `c` is the binomial
    filter split over the four polyphase components (image tap
    `(s * i + dy, s * j + dx)` is component `(dy, dx)`'s weight `(i, j)`); the
    1x1 kernel reads the first copy of each channel (its other rows are 0), so
    the module is exactly `BlurPool2D` then the 1x1 convolution.

    Branch "conv3d": its depth-3 kernel slides over the 4 components, so each
    filter's two outputs hold components (0, 1, 2) and (1, 2, 3).
    - With `filters >= 2 *` the input channels (every stage transition of the
      zoo's "replace" placement) the module is exactly `BlurPool2D` then the
      1x1 convolution: two filters per input channel, one whose depth-0 output
      holds the binomial's components `(B0, B1, B2)` and one whose depth-1
      output holds `B3`, and the 1x1 kernel reads those two outputs (filters
      beyond `2 *` the channels start with 1x1 rows of 0).
    - With fewer filters, each filter's two outputs are added by the 1x1
      convolution (the identity, or a Glorot draw, per filter). A filter's
      effective kernel on the components is then `(P, Q + P, R + Q, R)` for
      its three depth slices `P, Q, R`: the binomial filter fits only when
      `B0 - B1 + B2 - B3 = 0` at every tap, which holds for 2 taps but not for
      3 or more. The module starts from the least-squares closest filter of
      that form (the "high-frequency share" of `keras_shiftinv.diagnostics` is
      0.065 for the 4-tap binomial, 0.139 for its closest conv3d filter, 0.145
      for a 3-tap binomial).

    Args:
        filt_size: taps of the binomial filter, an integer >= 1. The module's
            `kernel_size` must hold it: with strides `s` and kernel size `k`, the
            module sees the image taps `-s * ((k - 1) // 2)` to
            `s * (k // 2) + s - 1` around each output, the blur
            `-((filt_size - 1) // 2)` to `filt_size // 2` (e.g. `kernel_size=3`
            holds up to 6 taps at stride 2, `kernel_size=1` 2 taps).

    Example:

    >>> layer = keras_shiftinv.layers.ShiftInvariantDown(
    ...     16, kernel_initializer=keras_shiftinv.initializers.LowPass(3))

    Reference:
        - [Zhang, Making Convolutional Networks Shift-Invariant Again, ICML
          2019](https://arxiv.org/abs/1904.11486) (the binomial filter).
    """

    def __init__(self, filt_size=4):
        self.filt_size = standardize_filt_size(filt_size)

    def __call__(self, shape, dtype=None):
        raise ValueError(
            "LowPass initialises a ShiftInvariantDown module as a whole (its grouped "
            "or 3D kernel and its 1x1 kernel together): pass it as the "
            "`kernel_initializer` of ShiftInvariantDown. Received: a call for a "
            f"weight of shape {shape}."
        )

    def check_fits(self, kernel_size, strides):
        """Raises a `ValueError` unless a module with `kernel_size` and `strides`
        (pairs) holds the filter."""
        for k, s in zip(kernel_size, strides, strict=True):
            _component_offsets(k, s, self.filt_size)

    def module_weights(self, branch, kernel_size, strides, channels, filters):
        """(kernel, pointwise kernel) of a `ShiftInvariantDown` module, as float32
        NumPy arrays in the layer's layouts."""
        taps = binomial_filter(self.filt_size)
        components = [
            _component_taps(taps, k, s, self.filt_size)
            for k, s in zip(kernel_size, strides, strict=True)
        ]
        # (kh, kw, sy, sx): the 2D filter's taps per component.
        per_component = np.einsum("iy,jx->ijyx", *components)
        kh, kw = kernel_size
        sy, sx = strides
        if filters == channels:
            mixing = np.eye(channels)
        else:
            mixing = keras.ops.convert_to_numpy(
                keras.initializers.GlorotUniform()((1, 1, channels, filters))
            ).reshape(channels, filters)
        if branch == "group":
            copies = math.lcm(channels, filters) // channels
            kernel = np.broadcast_to(
                per_component.reshape(kh, kw, sy * sx, 1),
                (kh, kw, sy * sx, channels * copies),
            )
            pointwise = np.zeros((channels, copies, filters))
            pointwise[:, 0] = mixing
            pointwise = pointwise.reshape(1, 1, channels * copies, filters)
        elif filters >= 2 * channels:
            kernel, pointwise = _conv3d_exact(
                per_component.reshape(kh, kw, 4), mixing, channels, filters
            )
        else:
            slices = _conv3d_slices(per_component.reshape(kh, kw, 4))
            kernel = np.einsum("aij,cf->aijcf", slices, mixing)
            # Feature f * 2 + d is output depth d of filter f: both add up.
            pointwise = np.zeros((filters, 2, filters))
            pointwise[np.arange(filters), :, np.arange(filters)] = 1.0
            pointwise = pointwise.reshape(1, 1, 2 * filters, filters)
        return kernel.astype("float32"), pointwise.astype("float32")

    def get_config(self):
        return {"filt_size": self.filt_size}


def _component_offsets(kernel_size, stride, filt_size):
    """(first image offset the module sees, first tap of the filter), after
    checking that the module's offsets hold the filter's."""
    first = -stride * ((kernel_size - 1) // 2)
    last = stride * (kernel_size // 2) + stride - 1
    start = -((filt_size - 1) // 2)
    if start < first or start + filt_size - 1 > last:
        raise ValueError(
            f"A kernel_size of {kernel_size} at stride {stride} covers the image "
            f"offsets {first}..{last} of each output, too few for a {filt_size}-tap "
            f"filter (offsets {start}..{start + filt_size - 1}). Use a larger "
            f"`kernel_size` or a smaller `filt_size`. Received: filt_size={filt_size}"
        )
    return first, start


def _component_taps(taps, kernel_size, stride, filt_size):
    """(kernel_size, stride) array: weight i of component d is the 1D filter's
    tap at image offset `stride * (i - (kernel_size - 1) // 2) + d`."""
    first, start = _component_offsets(kernel_size, stride, filt_size)
    out = np.zeros(kernel_size * stride)
    out[start - first : start - first + filt_size] = taps
    return out.reshape(kernel_size, stride)


def _conv3d_slices(target):
    """Depth slices (P, Q, R) whose effective component filters
    (P, Q + P, R + Q, R) are the least-squares closest to `target` (kh, kw, 4)."""
    design = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], "float64")
    solution = np.linalg.pinv(design) @ target.reshape(-1, 4).T
    return solution.reshape(3, *target.shape[:2])


def _conv3d_exact(target, mixing, channels, filters):
    """Conv3D and 1x1 kernels that compute the per-component filter `target`
    (kh, kw, 4) of every input channel, then `mixing` (channels, filters), exactly:
    two Conv3D filters per channel `c`. Filter `c` holds components (0, 1, 2) in
    its depth slices and the 1x1 kernel reads its depth-0 output (components
    0..2); filter `channels + c` holds component 3 in its last slice and the 1x1
    kernel reads its depth-1 output (components 1..3, of which only 3 is not 0).
    Filters from `2 * channels` on get the closest filter's slices and 1x1 rows
    of 0: they add nothing at the start, yet both their kernels train."""
    kh, kw, _ = target.shape
    kernel = np.zeros((3, kh, kw, channels, filters))
    pointwise = np.zeros((filters, 2, filters))
    for c in range(channels):
        kernel[:, :, :, c, c] = np.moveaxis(target[..., :3], -1, 0)
        kernel[2, :, :, c, channels + c] = target[..., 3]
        pointwise[c, 0] = mixing[c]
        pointwise[channels + c, 1] = mixing[c]
    if filters > 2 * channels:
        spare = keras.initializers.GlorotUniform()((channels, filters - 2 * channels))
        kernel[..., 2 * channels :] = np.einsum(
            "aij,cf->aijcf",
            _conv3d_slices(target),
            keras.ops.convert_to_numpy(spare),
        )
    return kernel, pointwise.reshape(1, 1, 2 * filters, filters)


def get(identifier):
    """A Keras initializer; "lowpass" is `LowPass()` (4 taps)."""
    if isinstance(identifier, str) and identifier.lower() == "lowpass":
        return LowPass()
    return keras.initializers.get(identifier)
