"""Shift-robustness reports of trained classifiers: the `evaluate` command.

For each model, on the first `images` examples of a data split, with shifts of kind
`shift` ("circular" or "crop", see `keras_shiftinv.app.metrics`):

- `accuracy`: without shifts; `shifted_accuracy`: under `samples` random shifts per
  image, dy and dx uniform in `[0, max_shift)`;
- `consistency`: how often two random shifts of an image get the same class
  (`samples` pairs per image).

On the first `detail_images` of them (these cost one forward pass per shift):

- `variation`: variance of the probability of the correct class over every shift
  `(dy, dx)` in `[0, max_shift)**2`, averaged over images;
- `stability`: the probability of the correct class against a diagonal shift
  `(d, d)`, `d = 0..max_shift`, per image and on average;
- `equivariance`: per layer, the cosine distance between shift(F(x)) and F(shift(x))
  for every shift `(dy, dx)` in `[0, max_shift]**2` (Zhang's ICLR draft, Figure 4).

Equivariance is always measured with circular shifts of the image and of the feature
maps, whatever `shift` is: any other shift changes what enters at the border, and
then not even a convolution would be equivariant. A feature map with stride `s`
(per axis: the input size over the map size, rounded to a power of two) is compared
at the input's resolution, as in Zhang's draft: every value is repeated `s x s`
times, so an input shift `(dy, dx)` is a shift of the upsampled map by `(dy, dx)`.
When `s` divides the shift, that is exactly F(x) shifted by `(dy / s, dx / s)`;
between those shifts it compares F(shift(x)) with the nearest-neighbour
interpolation of the shifted map, which no strided layer can match exactly. The
report gives each layer's distance at every shift, the mean over all shifts and the
mean over the non-zero shifts divisible by `s` (`mean_divisible`, None when there is
none). Layers without spatial axes (after global pooling) compare F(x) with
F(shift(x)): there equivariance is invariance. The distance of one image is one
minus the cosine similarity of the two flattened maps (0 when both are zero), and
the reported value is the mean over images.

Per downsampling layer (`downsampling`, see `keras_shiftinv.diagnostics`): the
high-frequency share of its effective stride-2 filter and, for a model saved by
the train command (`initial.weights.h5` beside it), the share at the start of
training and how far training moved the layer's weights.

The layers measured are those of the model (and of functional models nested in it,
such as a zoo network behind a Rescaling layer) that are convolutions, pooling or
other strided layers, residual additions, global pooling, dense layers and the
model's output; a layer called more than once is skipped.

`evaluate(...)` writes to `out_dir`: report.json (every number above), report.md (a
table), stability.png, equivariance_<model>.png (one heat map per layer),
equivariance_layers.png (the mean distance per layer), downsampling.png (the
high-frequency share per layer, trained and initial, against BlurPool2D(4)'s) and,
with several models, consistency_accuracy.png. TensorFlow backend only.
"""

import json
import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from keras_shiftinv import _install, diagnostics
from keras_shiftinv._keras_compat import inbound_nodes
from keras_shiftinv.app import data as data_lib
from keras_shiftinv.app import input_fit, metrics
from keras_shiftinv.app._files import FolderLock, write_text
from keras_shiftinv.app._paths import check_writable_dir
from keras_shiftinv.models import (
    is_functional,
    load_model,
    producer,
    with_probabilities,
)
from keras_shiftinv.validation import standardize_choice, standardize_int

# Individual images whose stability curves are kept in the report and drawn.
STABILITY_CURVES = 8
# Layers with these types are measured, besides strided ones and the model output.
_TAP_TYPES = (
    keras.layers.Add,
    keras.layers.Dense,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


def _taps(model):
    """(layer name, output tensor in `model`'s graph) of the measured layers."""
    outputs = {id(producer(t)) for t in model.outputs}
    taps = []
    for layer in model.layers:
        if len(inbound_nodes(layer)) != 1:
            continue  # an input layer, or a shared layer with one output per call
        if is_functional(layer):
            inner = _taps(layer)
            node_inputs = inbound_nodes(layer)[0].input_tensors
            sub = keras.Model(layer.inputs, [t for _, t in inner])
            inner_outputs = keras.tree.flatten(sub(node_inputs))
            taps += zip([n for n, _ in inner], inner_outputs, strict=True)
        elif (
            isinstance(layer, _TAP_TYPES)
            or getattr(layer, "strides", None) is not None
            or id(layer) in outputs
        ):
            taps.append((layer.name, layer.output))
    return taps


def feature_model(model):
    """A model with `model`'s input whose outputs are the measured layers' outputs.

    Returns:
        `(feature_model, names)`: `feature_model(x)` is a list of tensors, one per
        name.
    """
    taps = _taps(model)
    names = [name for name, _ in taps]
    return keras.Model(model.inputs, [t for _, t in taps]), names


def _stride(input_size, size):
    return 2 ** max(0, round(math.log2(input_size / size)))


def _cosine_distance(a, b):
    a = tf.reshape(tf.cast(a, tf.float32), [tf.shape(a)[0], -1])
    b = tf.reshape(tf.cast(b, tf.float32), [tf.shape(b)[0], -1])
    norms = tf.norm(a, axis=1) * tf.norm(b, axis=1)
    cosine = tf.reduce_sum(a * b, axis=1) / tf.maximum(norms, 1e-30)
    both_zero = tf.logical_and(
        tf.reduce_all(a == 0, axis=1), tf.reduce_all(b == 0, axis=1)
    )
    # Rounding can put the cosine of equal maps a little above 1.
    return tf.where(both_zero, 0.0, tf.maximum(1.0 - cosine, 0.0))


def _batched(images, batch_size):
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        if (spec[0] if isinstance(spec, tuple) else spec).shape.rank == 3:
            images = images.batch(batch_size)
        return images.map(lambda x, *_: tf.cast(x, tf.float32))
    images = np.asarray(images, np.float32)
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size)


def layer_equivariance(model, images, max_shift=8, batch_size=32, verbose=0):
    """Per-layer cosine distance between shift(F(x)) and F(shift(x)).

    See the module docstring for the layers, strides and the distance.

    Args:
        model: a functional or Sequential Keras model taking channels_last images.
        images: float32 numpy array `[N, H, W, C]`, or a `tf.data.Dataset` of
            images or `(images, labels, ...)` (batched or not).
        max_shift: circular shifts `(dy, dx)` in `[0, max_shift]**2` are measured.
        batch_size: images per forward pass (for arrays and unbatched data).
        verbose: 1 shows a progress bar.

    Returns:
        A list with one dict per layer: `name`, `shape` (of one example's output),
        `stride` (`[sy, sx]`, None without spatial axes), `distance` (nested list
        `[max_shift + 1][max_shift + 1]`, indexed `[dy][dx]`), `mean` and
        `mean_divisible`.
    """
    max_shift = standardize_int(max_shift, "max_shift", minimum=0)
    features, names = feature_model(model)
    shifts = [(dy, dx) for dy in range(max_shift + 1) for dx in range(max_shift + 1)]
    batches = _batched(images, batch_size)
    strides = None
    totals = np.zeros((len(names), len(shifts)))
    count = 0
    total = int(batches.cardinality())
    progress = keras.utils.Progbar(
        total * len(shifts) if total > 0 else None, verbose=verbose, unit_name="shift"
    )
    for x in batches:
        base = keras.tree.flatten(features(x, training=False))
        if strides is None:
            strides = [
                None
                if len(f.shape) != 4
                else tuple(_stride(x.shape[a], f.shape[a]) for a in (1, 2))
                for f in base
            ]
            compare = _comparator(features, strides)
        for k, (dy, dx) in enumerate(shifts):
            d = compare(x, base, tf.constant(dy), tf.constant(dx))
            totals[:, k] += tf.reduce_sum(d, axis=1).numpy()
            progress.add(1)
        count += int(x.shape[0])
    if not count:
        raise ValueError("layer_equivariance got no images.")
    grids = (totals / count).reshape(len(names), max_shift + 1, max_shift + 1)
    shapes = [tuple(int(n) for n in f.shape[1:]) for f in base]
    return [
        _layer_summary(name, shape, stride, grid)
        for name, shape, stride, grid in zip(names, shapes, strides, grids, strict=True)
    ]


def _comparator(features, strides):
    @tf.function(reduce_retracing=True)
    def compare(x, base, dy, dx):
        moved = keras.tree.flatten(
            features(metrics.circular_shift(x, dy, dx), training=False)
        )
        distances = []
        for before, after, stride in zip(base, moved, strides, strict=True):
            if stride is not None:
                before = tf.repeat(tf.repeat(before, stride[0], 1), stride[1], 2)
                before = tf.roll(before, [dy, dx], axis=[1, 2])
                after = tf.repeat(tf.repeat(after, stride[0], 1), stride[1], 2)
            distances.append(_cosine_distance(before, after))
        return tf.stack(distances)

    return compare


def _layer_summary(name, shape, stride, grid):
    size = grid.shape[0]
    dy, dx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    divisible = (dy + dx > 0) & (
        (dy % stride[0] == 0) & (dx % stride[1] == 0) if stride else True
    )
    return {
        "name": name,
        "shape": list(shape),
        "stride": None if stride is None else list(stride),
        "distance": grid.tolist(),
        "mean": float(grid.mean()),
        "mean_divisible": float(grid[divisible].mean()) if divisible.any() else None,
    }


def _fit_to_model(info, model, image_size, source):
    """pipeline() options that give the images the model's input size: those its
    run folder records (a model trained with --image-size is resized as in
    training), else the rule of `keras_shiftinv.app.input_fit`."""
    recorded = None if isinstance(source, keras.Model) else input_fit.recorded(source)
    if image_size is None and recorded is not None:
        image_size = recorded[1].get("image_size")
    return input_fit.fit_options(
        info.image_shape,
        tuple(model.inputs[0].shape[1:]),
        image_size,
        images=f"The images of {info.name!r}",
        model=f"the model {model.name!r}",
    )


def _labelled(ds, info, source, model):
    """`ds` with the labels of the classes `model` was trained on, when its run
    folder's config.json names them (`keras_shiftinv.app.data.relabel`)."""
    if isinstance(source, keras.Model):
        return ds
    class_names = input_fit.recorded_class_names(source)
    if class_names is None:
        return ds
    return data_lib.relabel(
        ds, info, class_names, model=f"the model {os.fspath(source)!r}"
    )


def _names(sources):
    """Short unique names: file stems, with parent folders only where needed."""
    paths = [
        s.name if isinstance(s, keras.Model) else os.path.splitext(os.fspath(s))[0]
        for s in sources
    ]
    parts = [os.path.normpath(p).split(os.sep) for p in paths]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(map(len, parts)):
            return names
        depth += 1


# What `measure` can compute; the consistency of each shift protocol has its own
# name, "consistency" is the one of the `shift` argument.
MEASURES = (
    "accuracy",
    "loss",
    "shifted_accuracy",
    "consistency",
    "consistency_circular",
    "consistency_crop",
    "consistency_crop_symmetric",
    "variation",
    "stability",
    "equivariance",
)
REPORT_MEASURES = (
    "accuracy",
    "shifted_accuracy",
    "consistency",
    "variation",
    "stability",
    "equivariance",
)


def measure(
    model,
    data,
    detail_data=None,
    names=REPORT_MEASURES,
    shift="circular",
    max_shift=8,
    samples=1,
    seed=0,
    batch_size=128,
    stability_shift=None,
    verbose=0,
):
    """The numbers `names` (see `MEASURES` and the module docstring) of one model:
    what the train command's summary, `evaluate`'s report and
    benchmarks/reproduce.py measure.

    Args:
        model: Keras model taking float32 images, outputting probabilities or
            logits (a softmax is then added).
        data: batched `tf.data.Dataset` of `(images, labels)` for the accuracy,
            loss and consistency numbers.
        detail_data: the same for the variation, stability and equivariance.
        names: the numbers to compute, in this order.
        shift: "circular" or "crop": the shifts of accuracy, shifted accuracy,
            consistency, variation and stability.
        max_shift: see the module docstring.
        samples: random shifts (pairs, for consistency) per image.
        seed: seed of the random shifts.
        batch_size: images per forward pass.
        stability_shift: largest shift of the stability curve (default
            `max_shift`).
        verbose: 1 shows a progress bar.

    Returns:
        A dict `{name: value}`; "loss" is the mean cross-entropy of the
        probabilities (a compiled or uncompiled model alike).
    """
    standardize_choice(shift, "shift", metrics.MODES)
    for name in names:
        standardize_choice(name, "names", MEASURES)
    model = with_probabilities(model)
    common = {"mode": shift, "batch_size": batch_size}
    random = {"max_shift": max_shift, "samples": samples, "seed": seed}

    def consistency(mode, symmetric=False):
        return lambda: metrics.shift_consistency(
            model, data, mode=mode, symmetric=symmetric, batch_size=batch_size, **random
        )

    def stability():
        top = max_shift if stability_shift is None else stability_shift
        curves = metrics.diagonal_stability(model, detail_data, top, **common)
        return {
            "shifts": list(range(top + 1)),
            "mean": curves.mean(axis=0).tolist(),
            "images": curves[:STABILITY_CURVES].tolist(),
        }

    table = {
        "accuracy": lambda: metrics.shifted_accuracy(
            model, data, max_shift=1, **common
        ),
        "loss": lambda: _loss(model, data),
        "shifted_accuracy": lambda: metrics.shifted_accuracy(
            model, data, **random, **common
        ),
        "consistency": consistency(shift),
        "consistency_circular": consistency("circular"),
        "consistency_crop": consistency("crop"),
        "consistency_crop_symmetric": consistency("crop", symmetric=True),
        "variation": lambda: metrics.classification_variation(
            model, detail_data, max_shift=max_shift, **common
        ),
        "stability": stability,
        "equivariance": lambda: layer_equivariance(
            model, detail_data, max_shift, batch_size, verbose=verbose
        ),
    }
    progress = keras.utils.Progbar(len(names), verbose=verbose, unit_name="metric")
    results = {}
    for name in names:
        results[name] = table[name]()
        progress.add(1)
    return results


def _loss(model, data):
    """Mean sparse categorical cross-entropy of `model`'s probabilities."""
    total, count = 0.0, 0
    for images, labels in data:
        probabilities = model(images, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        total += float(keras.ops.sum(losses))
        count += int(labels.shape[0])
    return total / max(count, 1)


def evaluate_model(
    model,
    data,
    detail_data,
    shift="circular",
    max_shift=8,
    samples=1,
    seed=0,
    batch_size=128,
    verbose=1,
):
    """All numbers of one model (see the module docstring): `measure` of the
    report's numbers, with the seconds they took.

    Returns:
        A dict of the numbers, as in report.json's "models" entries.
    """
    start = time.perf_counter()
    results = measure(
        model,
        data,
        detail_data,
        REPORT_MEASURES,
        shift,
        max_shift,
        samples,
        seed,
        batch_size,
        verbose=verbose,
    )
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def evaluate(
    models,
    dataset="fashion_mnist",
    out_dir="evaluation",
    split="test",
    data_dir=None,
    shift="circular",
    max_shift=8,
    samples=1,
    images=1000,
    detail_images=100,
    image_size=None,
    seed=0,
    batch_size=128,
    verbose=1,
    overwrite=False,
):
    """Evaluates models on a data set and writes the report to `out_dir`.

    Args:
        models: list of paths of saved Keras models (`.keras`), or of models.
        dataset, split, data_dir: the data, as in `keras_shiftinv.app.data.load`.
        out_dir: folder for report.json, report.md and the plots.
        shift: "circular" or "crop" (see `keras_shiftinv.app.metrics`).
        max_shift: random shifts are in `[0, max_shift)`, the stability curve and
            the equivariance maps go up to `max_shift`.
        samples: random shifts (pairs, for consistency) per image.
        images: examples for accuracy and consistency (the first ones of `split`).
        detail_images: examples (the first ones) for variation, stability and
            equivariance.
        image_size: resize the images to this size (when the model was trained
            with `--image-size`). Without it, the images must have the model's
            input size, except 28x28 images that are zero-padded to a 32x32
            model's input, as the train command does.
        seed: seed of the random shifts.
        batch_size: images per forward pass.
        verbose: 1 shows progress bars.
        overwrite: replace the report of an earlier evaluation in `out_dir`
            (refused otherwise, before any work).

    Returns:
        The report (the content of report.json).

    Raises:
        ValueError: a bad argument, an `out_dir` that cannot be written, holds
            a report (without `overwrite`) or is being written by another
            evaluation (all checked before any work), a file that is not a Keras
            model, data missing or not fitting a model, classes that are not
            those the model's run folder records (a subset of them is labelled
            by name).
    """
    if not models:
        raise ValueError("evaluate needs at least one model.")
    # Checked first: the report is written only after the whole evaluation.
    check_writable_dir(out_dir, "--out / out_dir")
    if _install.missing(("matplotlib",)):
        raise ValueError(_install.message(["matplotlib"], "evaluate's report"))
    report_path = os.path.join(out_dir, "report.json")
    if os.path.exists(report_path) and not overwrite:
        raise ValueError(
            f"{out_dir!r} (--out / out_dir) holds the report of an earlier "
            "evaluation: give another --out, or --overwrite (overwrite=True) to "
            "replace it."
        )
    with FolderLock(out_dir, f"The report folder {out_dir!r}", "--out / out_dir"):
        shift = standardize_choice(shift, "shift", metrics.MODES)
        max_shift = standardize_int(max_shift, "max_shift")
        samples = standardize_int(samples, "samples")
        images = standardize_int(images, "images")
        detail_images = min(standardize_int(detail_images, "detail_images"), images)
        loaded = [m if isinstance(m, keras.Model) else load_model(m) for m in models]
        # Image folders are read with the (first) model's channels.
        channels = {}
        if dataset == "folder":
            channels["channels"] = loaded[0].inputs[0].shape[-1]
        ds, info = data_lib.load(dataset, split, data_dir=data_dir, **channels)
        fits, labelled = [], []
        for source, model in zip(models, loaded, strict=True):
            fits.append(_fit_to_model(info, model, image_size, source))
            labelled.append(_labelled(ds, info, source, model))
            classes = model.outputs[0].shape[-1]
            if classes is not None and classes < info.num_classes:
                raise ValueError(
                    f"The model {model.name!r} has {classes} outputs, "
                    f"{info.name!r} has {info.num_classes} classes."
                )
        report = {
            "dataset": dataset,
            "split": split,
            "shift": shift,
            "crop_pad_mode": "reflect" if shift == "crop" else None,
            "max_shift": max_shift,
            "samples": samples,
            "images": min(images, info.num_examples or images),
            "detail_images": min(detail_images, info.num_examples or detail_images),
            "seed": seed,
            "models": [],
        }
        for name, source, model, fit, model_ds in zip(
            _names(models), models, loaded, fits, labelled, strict=True
        ):
            if verbose:
                print(f"Evaluating {name}")

            def batches(count, fit=fit, model_ds=model_ds):
                return data_lib.pipeline(
                    model_ds.take(count), batch_size, training=False, **fit
                ).cache()

            entry = {
                "name": name,
                "path": None if isinstance(source, keras.Model) else os.fspath(source),
                "parameters": int(model.count_params()),
                "input_preprocessing": fit or None,
                "downsampling": diagnostics.downsampling_report(
                    model, initial_weights=_initial_weights(source)
                ),
            }
            entry.update(
                evaluate_model(
                    model,
                    batches(images),
                    batches(detail_images),
                    shift,
                    max_shift,
                    samples,
                    seed,
                    batch_size,
                    verbose,
                )
            )
            report["models"].append(entry)
        write_report(report, out_dir)
        return report


def _initial_weights(source):
    """The weights a model saved by the train command started from, if known."""
    if isinstance(source, keras.Model):
        return None
    from keras_shiftinv.app.run_folder import RunFolder

    path = RunFolder.of_model(source).initial_weights
    return path if os.path.exists(path) else None


def _file_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(report, out_dir):
    """Writes report.json, report.md and the plots of a report to `out_dir`."""
    # matplotlib is only needed here: the command line imports this module.
    from keras_shiftinv.app import plots

    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1))
    entries = report["models"]
    plot_files = ["stability.png", "equivariance_layers.png", "downsampling.png"]
    plots.plot_stability(entries, os.path.join(out_dir, plot_files[0]))
    plots.plot_layer_means(entries, os.path.join(out_dir, plot_files[1]))
    plots.plot_downsampling(
        entries, os.path.join(out_dir, plot_files[2]), diagnostics.reference_share()
    )
    for entry in entries:
        name = f"equivariance_{_file_name(entry['name'])}.png"
        plots.plot_equivariance(entry, os.path.join(out_dir, name))
        plot_files.append(name)
    if len(entries) > 1:
        plot_files.append("consistency_accuracy.png")
        plots.plot_consistency_accuracy(entries, os.path.join(out_dir, plot_files[-1]))
    write_text(os.path.join(out_dir, "report.md"), markdown(report, plot_files))


def markdown(report, plot_files=()):
    """The report as a Markdown table (one row per model) and links to the plots."""
    lines = [
        f"# Shift evaluation on {report['dataset']} ({report['split']})",
        "",
        f"{report['shift']} shifts; random shifts in [0, {report['max_shift']}) px, "
        f"{report['samples']} per image (pairs for consistency), on "
        f"{report['images']} images; variation, stability and equivariance on "
        f"{report['detail_images']} images. Mean layer distance: cosine distance "
        "between shift(F(x)) and F(shift(x)), averaged over the measured layers and "
        f"the circular shifts in [0, {report['max_shift']}]^2 (0: exactly "
        "equivariant); output distance: the same for the model's output (0: "
        "exactly invariant).",
        "",
        "| model | parameters | accuracy | shifted accuracy | consistency | "
        "variation | stability (mean P at max shift) | mean layer distance | "
        "output distance | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in report["models"]:
        layers = entry["equivariance"]
        lines.append(
            f"| {entry['name']} | {entry['parameters']:,} | {entry['accuracy']:.4f} "
            f"| {entry['shifted_accuracy']:.4f} | {entry['consistency']:.4f} | "
            f"{entry['variation']:.2e} | {entry['stability']['mean'][-1]:.4f} | "
            f"{np.mean([layer['mean'] for layer in layers]):.3g} | "
            f"{layers[-1]['mean']:.3g} | {entry['seconds']} |"
        )
    lines += [
        "",
        "## Downsampling layers",
        "",
        "High-frequency share of each layer's effective stride-2 filter (the energy "
        "outside |w| < pi/2 on both axes; BlurPool2D(4): "
        f"{diagnostics.reference_share():.3f}, plain subsampling: 0.750), at the "
        "start of training when the model's initial weights are known, and the "
        "relative change of its weights since then (`keras_shiftinv.diagnostics`).",
        "",
        "| model | layer | kind | high-frequency share | at start | weight change |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]

    def number(value):
        return "-" if value is None else f"{value:.3f}"

    for entry in report["models"]:
        for layer in entry.get("downsampling", []):
            lines.append(
                f"| {entry['name']} | {layer['layer']} | {layer['kind']} | "
                f"{number(layer['high_frequency_share'])} | "
                f"{number(layer['initial_high_frequency_share'])} | "
                f"{number(layer['weight_change'])} |"
            )
    lines += [""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plot_files]
    return "\n".join(lines) + "\n"
