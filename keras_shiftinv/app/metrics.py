"""Shifts of images and how much a classifier's output changes under them.

Shifts (images are channels_last `[B, H, W, C]`; a shift `(dy, dx)` moves the
content down by dy and right by dx: `out[b, i, j] = in[b, i - dy, j - dx]`):

- "circular": pixels leaving one side come back on the other (`np.roll`), the
  protocol of Zhang's ICLR draft. Exactly what a model with circular padding and
  polyphase sampling is invariant to.
- "crop": the image is the centre of a larger image made by padding it
  (`pad_mode="reflect"`: mirror without repeating the edge, standing in for the
  surroundings a real photograph has; or `"zero"`), and the shift takes the window of
  the original size displaced by `(-dy, -dx)`. Two random shifts with dy, dx in
  `[0, max_shift)` are the two crops at offsets in `[0, max_shift)` of the ICML
  ImageNet protocol (the window at offset `(o_y, o_x)` of the image padded by
  `max_shift` is the shift `(max_shift - o_y, max_shift - o_x)`).

Metrics, all over a data set (a batched or unbatched `tf.data.Dataset` of `x`,
`(x, y)` or `(x, y, sample_weight)`, or numpy arrays `(x, y)` / `x`):

- `shift_consistency`: how often the predicted class (argmax) of an image is the same
  under two random shifts, each with dy, dx drawn independently and uniformly from
  `[0, max_shift)` (`samples` pairs per image); `samples="all"` gives its exact
  expectation, over every pair of shifts.
- `classification_variation`: variance over shifts of the probability of the
  correct class, averaged over images (lower is more stable).
- `shifted_accuracy`: accuracy under one random shift per image (`max_shift=1`:
  unshifted accuracy).
- `diagonal_stability`: probability of the correct class under the diagonal shifts
  `(d, d)`, `d = 0..max_shift`, per image.
- `predict_shifted`: the predictions under given shifts, from which the others are
  computed.

Models take float32 images and output class probabilities (argmax-only metrics work
with logits too). Everything is batched: one compiled function (`tf.function`, no
XLA) runs the model on a batch under each shift in turn; there is no Python loop
over images. Under a `tf.distribute` strategy the function runs in the cross-replica
context on the local worker (no collective ops), so every worker computes the same
number over all of `data`; on several GPUs it uses the first one. TensorFlow
backend only.
"""

import dataclasses
import itertools
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_shiftinv.validation import standardize_choice, standardize_int

MODES = ("circular", "crop")
PAD_MODES = ("reflect", "zero")

_PREDICTORS = weakref.WeakKeyDictionary()


def shift_images(images, dy, dx, mode="circular", pad_mode="reflect"):
    """Shifts a batch of channels_last images by `(dy, dx)` pixels.

    `out[b, i, j] = images[b, i - dy[b], j - dx[b]]`, with the pixels outside the
    image taken circularly (`mode="circular"`) or from the padding `pad_mode`
    (`mode="crop"`, see the module docstring).

    Args:
        images: tensor `[B, H, W, C]`.
        dy: int or int tensor `[B]`: shift down (negative: up).
        dx: int or int tensor `[B]`: shift right (negative: left).
        mode: "circular" or "crop".
        pad_mode: "reflect" or "zero", for `mode="crop"`.

    Returns:
        The shifted images, same shape and dtype.
    """
    standardize_choice(mode, "mode", MODES)
    standardize_choice(pad_mode, "pad_mode", PAD_MODES)
    fill = "circular" if mode == "circular" else pad_mode
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    rows, row_ok = _source_index(shape[0], shape[1], dy, fill)
    cols, col_ok = _source_index(shape[0], shape[2], dx, fill)
    out = tf.gather(images, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    if fill == "zero":
        inside = tf.logical_and(row_ok[:, :, None], col_ok[:, None, :])
        out = tf.where(inside[..., None], out, tf.zeros_like(out))
    return out


def circular_shift(images, dy, dx):
    """Rolls a batch of channels_last images by `(dy, dx)` (per sample if tensors).

    Same as `shift_images(images, dy, dx, mode="circular")`.
    """
    return shift_images(images, dy, dx, mode="circular")


def crop_shift(images, dy, dx, pad_mode="reflect"):
    """Shifts a batch of channels_last images by `(dy, dx)`, filling from padding.

    Same as `shift_images(images, dy, dx, mode="crop", pad_mode=pad_mode)`.
    """
    return shift_images(images, dy, dx, mode="crop", pad_mode=pad_mode)


@dataclasses.dataclass(frozen=True)
class ShiftedPredictions:
    """Predictions of a model on images under S shifts each.

    Args:
        classes: int64 `[N, S]`: argmax of the model's output.
        label_probs: float32 `[N, S]`: output at the true class (None without
            labels).
        labels: int64 `[N]` (None without labels).
        shifts: int `[N, S, 2]`: the `(dy, dx)` of each prediction.
    """

    classes: np.ndarray
    label_probs: np.ndarray | None
    labels: np.ndarray | None
    shifts: np.ndarray


def predict_shifted(
    model,
    data,
    shifts,
    mode="circular",
    pad_mode="reflect",
    batch_size=128,
    max_batches=None,
):
    """Runs `model` on every image of `data` under each of its shifts.

    Args:
        model: Keras model taking `[B, H, W, C]` float32 images.
        data: `tf.data.Dataset` or numpy arrays (see the module docstring).
        shifts: int array `[S, 2]` of `(dy, dx)` applied to every image, or a
            callable `(batch_size) -> [batch_size, S, 2]` drawing them per image.
        mode: "circular" or "crop".
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data (batched data is used as is).
        max_batches: use at most this many batches of `data` (None: all).

    Returns:
        A `ShiftedPredictions`.
    """
    standardize_choice(mode, "mode", MODES)
    standardize_choice(pad_mode, "pad_mode", PAD_MODES)
    if not callable(shifts):
        fixed = np.asarray(shifts, np.int32)
        if fixed.ndim != 2 or fixed.shape[1] != 2 or not len(fixed):
            raise ValueError(
                f"Invalid shifts with shape {fixed.shape}: expected (S, 2) pairs "
                "(dy, dx), or a callable drawing them per image."
            )

        def shifts(n):
            return np.broadcast_to(fixed, (n,) + fixed.shape)

    run = _predictor(model, mode, pad_mode)
    classes, probs, labels, used = [], [], [], []
    for x, y in _batches(data, batch_size, max_batches):
        batch_shifts = np.asarray(shifts(int(x.shape[0])), np.int32)
        c, p = run(
            x, tf.zeros_like(x[:, 0, 0, 0], tf.int64) if y is None else y, batch_shifts
        )
        classes.append(c.numpy())
        probs.append(p.numpy())
        used.append(batch_shifts)
        labels.append(None if y is None else y.numpy())
    if not classes:
        raise ValueError("data has no examples.")
    has_labels = labels[0] is not None
    return ShiftedPredictions(
        classes=np.concatenate(classes),
        label_probs=np.concatenate(probs) if has_labels else None,
        labels=np.concatenate(labels) if has_labels else None,
        shifts=np.concatenate(used),
    )


def shift_consistency(
    model,
    data,
    mode="circular",
    max_shift=8,
    samples=1,
    seed=0,
    pad_mode="reflect",
    batch_size=128,
    max_batches=None,
    symmetric=False,
):
    """Fraction of (image, shift pair) where the predicted class does not change.

    For each image, `samples` pairs of shifts are drawn, every dy and dx
    independently and uniformly from `[0, max_shift)` (a fixed `seed` gives the same
    pairs on the same data); the result is the fraction of pairs whose argmax
    agrees. `samples="all"` evaluates every pair of the `max_shift**2` shifts
    (including equal ones), the exact expectation of the random version.
    `symmetric=True` draws from `[-max_shift, max_shift]` instead: with
    `mode="crop"`, Zhang's ICML protocol in its symmetric form, both windows
    placed anywhere within `max_shift` px of the centre of the padded image.

    Args:
        model: Keras model taking `[B, H, W, C]` float32 images.
        data: `tf.data.Dataset` or numpy arrays; labels are not needed.
        mode: "circular" or "crop" (see the module docstring).
        max_shift: shifts are drawn from `[0, max_shift)`.
        samples: pairs per image (int), or "all".
        seed: int seeding the draws.
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data.
        max_batches: use at most this many batches of `data`.
        symmetric: draw shifts from `[-max_shift, max_shift]`.

    Returns:
        A float in [0, 1].
    """
    max_shift = standardize_int(max_shift, "max_shift")
    standardize_choice(symmetric, "symmetric", (False, True))
    if samples == "all":
        result = predict_shifted(
            model,
            data,
            _grid(max_shift, symmetric),
            mode,
            pad_mode,
            batch_size,
            max_batches,
        )
        classes = result.classes
        agree = (classes[:, :, None] == classes[:, None, :]).mean(axis=(1, 2))
        return float(agree.mean())
    samples = standardize_int(samples, "samples")
    result = predict_shifted(
        model,
        data,
        _random_shifts(max_shift, 2 * samples, seed, symmetric),
        mode,
        pad_mode,
        batch_size,
        max_batches,
    )
    return float(np.mean(result.classes[:, 0::2] == result.classes[:, 1::2]))


def classification_variation(
    model,
    data,
    mode="circular",
    max_shift=8,
    shifts=None,
    pad_mode="reflect",
    batch_size=128,
    max_batches=None,
):
    """Variance over shifts of the probability of the correct class, averaged.

    Per image, the (population) variance of the model's probability of its true
    class over the shifts, then the mean over images. 0 for an invariant model.

    Args:
        model: Keras model outputting class probabilities.
        data: `tf.data.Dataset` or numpy arrays `(x, y)`; labels are needed.
        mode: "circular" or "crop" (see the module docstring).
        max_shift: without `shifts`, every `(dy, dx)` in `[0, max_shift)**2`.
        shifts: `[S, 2]` array of `(dy, dx)` to use instead.
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data.
        max_batches: use at most this many batches of `data`.

    Returns:
        A float >= 0.
    """
    if shifts is None:
        shifts = _grid(standardize_int(max_shift, "max_shift"))
    result = _labelled(
        predict_shifted(model, data, shifts, mode, pad_mode, batch_size, max_batches),
        "classification_variation",
    )
    return float(result.label_probs.var(axis=1).mean())


def shifted_accuracy(
    model,
    data,
    mode="circular",
    max_shift=8,
    samples=1,
    seed=0,
    pad_mode="reflect",
    batch_size=128,
    max_batches=None,
):
    """Accuracy under random shifts, dy and dx uniform in `[0, max_shift)`.

    `samples` shifts per image; `max_shift=1` gives the unshifted accuracy.

    Args:
        model: Keras model taking `[B, H, W, C]` float32 images.
        data: `tf.data.Dataset` or numpy arrays `(x, y)`; labels are needed.
        mode: "circular" or "crop" (see the module docstring).
        max_shift: shifts are drawn from `[0, max_shift)`.
        samples: shifted copies per image.
        seed: int seeding the draws.
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data.
        max_batches: use at most this many batches of `data`.

    Returns:
        A float in [0, 1].
    """
    shifts = _random_shifts(
        standardize_int(max_shift, "max_shift"),
        standardize_int(samples, "samples"),
        seed,
    )
    result = _labelled(
        predict_shifted(model, data, shifts, mode, pad_mode, batch_size, max_batches),
        "shifted_accuracy",
    )
    return float(np.mean(result.classes == result.labels[:, None]))


def diagonal_stability(
    model,
    data,
    max_shift=8,
    mode="circular",
    pad_mode="reflect",
    batch_size=128,
    max_batches=None,
):
    """Probability of the correct class against a diagonal shift `(d, d)`.

    Args:
        model: Keras model outputting class probabilities.
        data: `tf.data.Dataset` or numpy arrays `(x, y)`; labels are needed.
        max_shift: the largest d (the curve has `max_shift + 1` points).
        mode: "circular" or "crop" (see the module docstring).
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data.
        max_batches: use at most this many batches of `data`.

    Returns:
        float32 array `[N, max_shift + 1]`: row n is image n's curve for d = 0,
        1, ..., max_shift; `.mean(axis=0)` is the average curve.
    """
    d = np.arange(standardize_int(max_shift, "max_shift", minimum=0) + 1)
    result = _labelled(
        predict_shifted(
            model,
            data,
            np.stack([d, d], axis=1),
            mode,
            pad_mode,
            batch_size,
            max_batches,
        ),
        "diagonal_stability",
    )
    return result.label_probs


def _source_index(batch, size, shift, fill):
    """Per-sample source indices `i - shift` mapped into `[0, size)`, and validity."""
    shift = tf.broadcast_to(tf.cast(shift, tf.int32), [batch])
    index = tf.range(size)[None, :] - shift[:, None]
    inside = tf.logical_and(index >= 0, index < size)
    if fill == "circular":
        index = tf.math.floormod(index, size)
    elif fill == "reflect":
        # Mirror without repeating the edge: period 2 * (size - 1).
        period = tf.maximum(2 * (size - 1), 1)
        index = tf.math.floormod(index, period)
        index = tf.where(index >= size, period - index, index)
    else:
        index = tf.clip_by_value(index, 0, size - 1)
    return index, inside


def _shift_range(max_shift, symmetric=False):
    """The shifts per axis: `[0, max_shift)`, or `[-max_shift, max_shift]`."""
    return range(-max_shift, max_shift + 1) if symmetric else range(max_shift)


def _grid(max_shift, symmetric=False):
    shifts = _shift_range(max_shift, symmetric)
    return np.array(list(itertools.product(shifts, repeat=2)), np.int32)


def _random_shifts(max_shift, count, seed, symmetric=False):
    """Callable drawing `count` shifts per image; the draws follow the batches."""
    if seed is not None:
        standardize_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    shifts = _shift_range(max_shift, symmetric)
    return lambda n: rng.integers(shifts.start, shifts.stop, size=(n, count, 2))


def _labelled(result, name):
    if result.labels is None:
        raise ValueError(f"{name} needs labels: give data as (x, y).")
    return result


def _batches(data, batch_size, max_batches):
    """Yields `(float32 images [B, H, W, C], int64 labels [B] or None)`."""
    batch_size = standardize_int(batch_size, "batch_size")
    if max_batches is not None:
        max_batches = standardize_int(max_batches, "max_batches")
    if not isinstance(data, tf.data.Dataset):
        if isinstance(data, tuple | list):
            data = tuple(data) if len(data) > 1 else data[0]
        data = tf.data.Dataset.from_tensor_slices(data)
    spec = data.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    if not isinstance(x_spec, tf.TensorSpec):
        raise ValueError(
            f"data must yield images x or tuples (x, y[, sample_weight]), got {spec}."
        )
    if x_spec.shape.rank == 3:
        data = data.batch(batch_size)
    elif x_spec.shape.rank != 4:
        raise ValueError(
            f"data must hold images [H, W, C] or batches [B, H, W, C], got "
            f"{x_spec.shape}."
        )
    if max_batches is not None:
        data = data.take(max_batches)
    for element in data:
        x, y = (
            (element[0], element[1] if len(element) > 1 else None)
            if isinstance(element, tuple)
            else (element, None)
        )
        if y is not None and y.shape.rank == 2:
            y = tf.argmax(y, axis=-1)
        yield (
            tf.cast(x, tf.float32),
            None if y is None else tf.reshape(tf.cast(y, tf.int64), [-1]),
        )


def _predictor(model, mode, pad_mode):
    """Compiled `(x, y, shifts [B, S, 2]) -> (classes [B, S], label probs [B, S])`.

    One per model and shift mode, kept while the model lives, so a callback or an
    evaluation calling the metrics again does not trace again.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "keras_shiftinv.app.metrics needs the TensorFlow backend, not "
            f"{keras.backend.backend()!r}."
        )
    cache = _PREDICTORS.setdefault(model, {})
    if (mode, pad_mode) in cache:
        return cache[(mode, pad_mode)]
    # A weak reference: the cached function must not keep its model alive.
    model_ref = weakref.ref(model)

    @tf.function(reduce_retracing=True)
    def run(x, y, shifts):
        count = tf.shape(shifts)[1]
        classes = tf.TensorArray(tf.int64, size=count)
        probs = tf.TensorArray(tf.float32, size=count)
        for k in tf.range(count):
            shifted = shift_images(x, shifts[:, k, 0], shifts[:, k, 1], mode, pad_mode)
            out = tf.cast(model_ref()(shifted, training=False), tf.float32)
            check = tf.debugging.assert_less(
                y,
                tf.shape(out, out_type=tf.int64)[-1],
                message="Labels must be smaller than the number of model outputs",
            )
            with tf.control_dependencies([check]):
                label_probs = tf.gather(out, y, axis=1, batch_dims=1)
            classes = classes.write(k, tf.argmax(out, axis=-1))
            probs = probs.write(k, label_probs)
        return tf.transpose(classes.stack()), tf.transpose(probs.stack())

    cache[(mode, pad_mode)] = run
    return run
