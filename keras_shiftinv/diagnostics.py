"""What each downsampling layer of a model computes: does it low-pass before it
subsamples, and how far did training move it?

A layer that subsamples by 2 keeps the frequencies `|w| < pi/2` on both axes;
energy above that folds back (aliases) onto them. The **high-frequency share** of a
linear filter is the fraction of its energy outside that band,

    1 - (integral over |wy|, |wx| < pi/2 of |H(wy, wx)|^2) / (integral over all
        of |H|^2)

computed exactly from the filter's taps (a quadratic form: no frequency grid) by
`keras_shiftinv.ops.high_frequency_share`, the function `ShiftInvariantDown`'s
`lowpass_penalty` trains with. For a layer with several input and output
channels, the energies of all its (input, output) filters are added. Reference
values: 0.75 for a single tap (plain subsampling: white), 0.145 for
`BlurPool2D(3)`, 0.065 for `BlurPool2D(4)`, 0.030 for 5 taps; a random white
kernel is near 0.75.

The **effective stride-2 filter** of a layer is what multiplies the image before
the subsampling: the kernel of a strided Conv2D / DepthwiseConv2D; the binomial
filter of BlurPool2D, MaxBlurPool2D (after its dense max) and PolyphaseDown2D; the
box of a strided average pool; for `ShiftInvariantDown` the image kernel that its
grouped or 3D convolution and 1x1 convolution make together
(`ShiftInvariantDown.effective_kernel`). A strided max pool is not linear: it has
none (`None`).

The **weight change** of a layer is `||w - w0|| / ||w0||` over all its trainable
weights, against the weights `w0` at the start of training (`train` saves them as
`initial.weights.h5` in the run folder).
"""

import keras
import numpy as np

from keras_shiftinv import filters
from keras_shiftinv import layers as si_layers
from keras_shiftinv import ops as si_ops

# BlurPool2D(4)'s share, the reference of Zhang's anti-aliasing.
REFERENCE_FILT_SIZE = 4


def high_frequency_share(kernel):
    """The energy share of `kernel` outside `|wy|, |wx| < pi/2` (module docstring).

    `keras_shiftinv.ops.high_frequency_share` in float64 (float32 on JAX without
    x64), as a Python float.

    Args:
        kernel: array `(kh, kw)` or `(kh, kw, ...)`: the trailing axes index
            filters whose energies are added.

    Returns:
        A float in [0, 1]; 0 for an all-zero kernel.
    """
    kernel = np.asarray(kernel, "float64")
    return float(keras.ops.convert_to_numpy(si_ops.high_frequency_share(kernel)))


def _binomial_2d(filt_size):
    taps = filters.binomial_filter(filt_size)
    return np.outer(taps, taps)


def reference_share(filt_size=REFERENCE_FILT_SIZE):
    """The high-frequency share of `BlurPool2D(filt_size)`."""
    return high_frequency_share(_binomial_2d(filt_size))


def _strides(layer):
    strides = getattr(layer, "strides", None)
    if strides is None:
        return None
    strides = tuple(strides) if isinstance(strides, list | tuple) else (strides,) * 2
    return strides if len(strides) == 2 else None


def effective_filter(layer):
    """`(kind, kernel or None)` for a layer that subsamples, else None.

    `kernel` is the effective stride-2 filter `(kh, kw, ...)` (module docstring);
    None for a strided max pool.
    """
    strides = _strides(layer)
    if strides is None or strides == (1, 1):
        return None
    if isinstance(layer, si_layers.ShiftInvariantDown):
        return "learned", keras.ops.convert_to_numpy(layer.effective_kernel())
    if isinstance(layer, si_layers.BlurPool2D | si_layers.MaxBlurPool2D):
        return "blur", _binomial_2d(layer.filt_size)
    if isinstance(layer, si_layers.PolyphaseDown2D):
        return "polyphase", _binomial_2d(layer.filt_size)
    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
        kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else None
        kernel = layer.kernel if kernel is None else kernel
        return "strided conv", keras.ops.convert_to_numpy(kernel)
    if isinstance(layer, keras.layers.AveragePooling2D):
        return "average pool", np.full(tuple(layer.pool_size), 1.0)
    if isinstance(layer, keras.layers.MaxPooling2D):
        return "max pool", None
    return None


def _walk(model, prefix=""):
    """(path, layer) for every layer, nested models included."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from _walk(layer, f"{path}/")
        else:
            yield path, layer


def _initial_layers(model, initial_weights):
    """{path: layer} of `model` with `initial_weights` (a model of the same
    architecture, or a `.weights.h5` file saved from one)."""
    if initial_weights is None:
        return {}
    if isinstance(initial_weights, str | bytes) or hasattr(
        initial_weights, "__fspath__"
    ):
        path = str(initial_weights)
        reference = keras.models.clone_model(model)
        try:
            reference.load_weights(path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"`initial_weights` must be weights saved from this model "
                f"(model.save_weights). Received: initial_weights={path!r} ({err})"
            ) from err
        initial_weights = reference
    if not isinstance(initial_weights, keras.Model):
        raise ValueError(
            "`initial_weights` must be a path to a .weights.h5 file or a Keras "
            f"model. Received: initial_weights={initial_weights!r}"
        )
    return dict(_walk(initial_weights))


def _weight_change(layer, initial):
    if initial is None or not layer.trainable_weights:
        return None
    now = np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(w)) for w in layer.trainable_weights]
    )
    start = np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(w)) for w in initial.trainable_weights]
    )
    scale = np.linalg.norm(start)
    return float(np.linalg.norm(now - start) / scale) if scale else None


def downsampling_report(model, initial_weights=None):
    """One entry per layer of `model` that subsamples (nested models included).

    Args:
        model: a Keras model.
        initial_weights: None, a model of the same architecture, or a path to a
            `.weights.h5` file of `model`'s weights at the start of training.

    Returns:
        A list of dicts: `layer` (path), `class`, `kind` ("strided conv",
        "learned", "blur", "polyphase", "average pool", "max pool"),
        `high_frequency_share` (None for a max pool), `initial_high_frequency_share`
        and `weight_change` (None without `initial_weights` or weights).

    Example:

    >>> model = zoo.resnet18(variant="group", num_classes=10, input_shape=(32, 32, 3),
    ...                      stem="cifar", width_multiplier=1 / 8)
    >>> report = keras_shiftinv.diagnostics.downsampling_report(model)
    >>> report[0]["layer"], round(report[0]["high_frequency_share"], 2)
    """
    initial = _initial_layers(model, initial_weights)
    entries = []
    for path, layer in _walk(model):
        found = effective_filter(layer)
        if found is None:
            continue
        kind, kernel = found
        entry = {
            "layer": path,
            "class": type(layer).__name__,
            "kind": kind,
            "high_frequency_share": None
            if kernel is None
            else high_frequency_share(kernel),
            "initial_high_frequency_share": None,
            "weight_change": None,
        }
        start = initial.get(path)
        if start is not None:
            start_filter = effective_filter(start)
            if start_filter is not None and start_filter[1] is not None:
                entry["initial_high_frequency_share"] = high_frequency_share(
                    start_filter[1]
                )
            entry["weight_change"] = _weight_change(layer, start)
        entries.append(entry)
    return entries


def summarize(entries):
    """Means over the learned layers (ShiftInvariantDown) and over all layers with
    a filter: `{"learned": {...}, "all": {...}}`, each with the mean
    `high_frequency_share`, `initial_high_frequency_share` and `weight_change`
    (None where no layer has the value)."""

    def mean(rows, key):
        values = [row[key] for row in rows if row[key] is not None]
        return float(np.mean(values)) if values else None

    groups = {
        "learned": [e for e in entries if e["kind"] == "learned"],
        "all": [e for e in entries if e["high_frequency_share"] is not None],
    }
    keys = ("high_frequency_share", "initial_high_frequency_share", "weight_change")
    return {
        name: {key: mean(rows, key) for key in keys} | {"layers": len(rows)}
        for name, rows in groups.items()
    }


__all__ = [
    "downsampling_report",
    "effective_filter",
    "high_frequency_share",
    "reference_share",
    "summarize",
]
