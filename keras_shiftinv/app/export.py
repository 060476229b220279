"""SavedModel export in TensorFlow Serving's layout.

TF Serving watches a model base directory and serves its highest numbered version
sub-directory, `BASE/1/`, `BASE/2/`, ... Each version is a plain SavedModel: the
Keras model, including the package's custom layers, is traced into a TensorFlow
graph, so serving needs neither Keras nor this package.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_shiftinv.app._files import FolderLock
from keras_shiftinv.app._paths import check_writable_dir
from keras_shiftinv.app.data import fit_images
from keras_shiftinv.app.input_fit import fitted_shape
from keras_shiftinv.models import with_probabilities
from keras_shiftinv.validation import standardize_int

SIGNATURE_NAME = "serving_default"
# What `predict` needs beyond the signature: the model's input shape (a
# signature that fits training images takes any size) and the class names.
METADATA = os.path.join("assets.extra", "keras_shiftinv.json")
# The prefix of the hidden folder an export writes before renaming it into place.
_STAGING = ".export-"


def _single_io(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: {model!r}")
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"Model {model.name!r} has no defined inputs: export needs a functional "
            "or Sequential model built on a `keras.Input`."
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(inputs)} inputs and {len(outputs)} "
            "outputs: export needs one image input and one class output."
        )
    if len(inputs[0].shape) != 4 or len(outputs[0].shape) != 2:
        raise ValueError(
            f"Model {model.name!r} maps {inputs[0].shape} to {outputs[0].shape}: "
            "export needs images (batch, height, width, channels) -> (batch, classes)."
        )
    return inputs[0], outputs[0]


def _source_size(model_shape, input_fit):
    """(height, width) of the training images when they differ from the model's
    input and the fit is known, else None; and the fit's options."""
    if input_fit is None:
        return None, {}
    image_shape, options = input_fit
    source = tuple(image_shape[:2])
    if not options or None in source or source == tuple(model_shape[:2]):
        return None, {}
    if fitted_shape(image_shape, options) != tuple(model_shape):
        raise ValueError(
            f"Invalid input_fit={input_fit!r}: it gives images of shape "
            f"{fitted_shape(image_shape, options)}, the model takes "
            f"{tuple(model_shape)}."
        )
    return source, options


def next_version(base_dir):
    """1 + the highest numbered version directory in `base_dir` (1 if none)."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(n) for n in os.listdir(base_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def version_dir(base_dir, version=None, overwrite=False):
    """The version directory an export writes, `base_dir/VERSION` (see
    `export_for_serving` for the arguments), after checking that it may be written
    (nothing is created yet).

    Raises:
        ValueError: a bad `version`, a `base_dir` that cannot be written, or an
            existing version without `overwrite`.
    """
    base_dir = os.path.abspath(os.fspath(base_dir))
    if os.path.basename(base_dir).isdigit():
        named = int(os.path.basename(base_dir))
        if version is not None and version != named:
            raise ValueError(
                f"`base_dir`={base_dir!r} names version {named}, but "
                f"version={version!r}. Pass either the version directory or the "
                "base directory and a version."
            )
        base_dir, version = os.path.dirname(base_dir), named
    if version is not None:
        version = standardize_int(version, "version")
    check_writable_dir(base_dir, "--out / base_dir")
    if version is None:
        version = next_version(base_dir)
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise ValueError(
            f"Version {version} already exists at {target!r}. Choose another "
            "`version` (or leave it None for the next one), or pass overwrite=True "
            "(--overwrite) to replace it."
        )
    return target


def export_for_serving(
    model,
    base_dir,
    version=None,
    overwrite=False,
    from_logits=None,
    input_name="images",
    input_fit=None,
    class_names=None,
):
    """Writes `model` as a SavedModel for TF Serving in `base_dir/VERSION/`.

    The `serving_default` signature takes uint8 images `[batch, height, width,
    channels]` (any batch size; the image shape is the model's input shape: images
    of another shape or rank fail with an `InvalidArgumentError` naming both
    shapes) under the name `input_name`, casts them to the model's float input (raw
    pixel values, as the package's trained models expect: their rescaling is inside
    the model) and returns `probabilities` (float32, `[batch, classes]`) and
    `classes` (int64, `[batch]`, the argmax). With `input_fit`, it also takes
    images of the training data's own size and fits them in the graph, so a model
    trained on 28x28 images is served 28x28 images.

    The version is written to a hidden temporary directory beside it and renamed into
    place, so a running TF Serving never loads a half-written version. One export
    writes to a base directory at a time (a lock file, `keras_shiftinv.app._files`): a
    second one gets a `ValueError`; the hidden directory of a killed export is
    deleted by the next one.

    Args:
        model: a functional or Sequential `keras.Model` with one image input and one
            `(batch, classes)` output.
        base_dir: the model base directory (TF Serving's `--model_base_path`), for
            example "models/fmnist", or a version directory in it, "models/fmnist/1"
            (a path whose last name is a number names the version itself).
        version: integer >= 1; None takes the version named by `base_dir`, or the
            next free one.
        overwrite: whether to replace an existing version directory.
        from_logits: True if the model outputs logits (a softmax is added in the
            graph), False if it outputs probabilities, None to detect it from the
            model's last layer (a softmax activation, or a linear one).
        input_name: name of the signature's image input.
        input_fit: `(image_shape, options)` of the images the model was trained
            on, as `keras_shiftinv.app.input_fit.recorded` reads them from a run
            folder: the signature then also takes images of that size (28x28
            Fashion-MNIST for a 32x32 model) and fits them in the graph as
            training did (`keras_shiftinv.app.data.fit_images`). None: only the
            model's input size.
        class_names: the names of the classes, in output order (the run
            folder's, `keras_shiftinv.app.input_fit.recorded_class_names`), or None.
            `VERSION/assets.extra/` keeps them with the model's input shape
            (`METADATA`), for `predict`; TF Serving ignores the file.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: a bad argument, a model that export cannot serve, a
            `base_dir` that cannot be written or that another export is writing,
            or an existing version directory without `overwrite=True`.
    """
    model_input, _ = _single_io(model)
    named = version is not None or os.path.basename(os.fspath(base_dir)).isdigit()
    target = version_dir(base_dir, version, overwrite)
    base_dir, version = os.path.split(target)
    model = with_probabilities(model, from_logits, strict=True)

    image_shape = (None, *model_input.shape[1:])
    source, options = _source_size(model_input.shape[1:], input_fit)
    signature_shape = (
        image_shape if source is None else (None, None, None, image_shape[3])
    )

    def serve(images):
        # A loaded signature does not check the shape it is called with: without
        # this, images of another size are classified, and another rank aborts the
        # process in a convolution kernel.
        images = tf.ensure_shape(images, signature_shape)
        images = tf.cast(images, tf.float32)
        if source is not None:
            size = tf.shape(images)[1:3]
            from_source = tf.reduce_all(size == source)
            check = tf.debugging.Assert(
                from_source | tf.reduce_all(size == image_shape[1:3]),
                [
                    f"images must be {source[0]}x{source[1]} or "
                    f"{image_shape[1]}x{image_shape[2]}; got height and width",
                    size,
                ],
            )
            with tf.control_dependencies([check]):
                images = tf.cond(
                    from_source, lambda: fit_images(images, **options), lambda: images
                )
        images = tf.ensure_shape(images, image_shape)
        outputs = model(tf.cast(images, model_input.dtype), training=False)
        probabilities = tf.cast(outputs, tf.float32)
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "classes": classes}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE_NAME,
        serve,
        input_signature=[tf.TensorSpec(signature_shape, tf.uint8, name=input_name)],
    )
    with FolderLock(base_dir, f"The export base {base_dir!r}", "--out / base_dir"):
        # Chosen again under the lock: another export may have written it since.
        target = version_dir(target if named else base_dir, overwrite=overwrite)
        version = os.path.basename(target)
        # What a killed export left: no other export runs while this one holds
        # the lock.
        for entry in os.scandir(base_dir):
            if entry.name.startswith(_STAGING) and entry.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
        staging = tempfile.mkdtemp(prefix=f"{_STAGING}{version}-", dir=base_dir)
        try:
            archive.write_out(os.path.join(staging, "new"), verbose=False)
            metadata = {
                "input_shape": list(model_input.shape[1:]),
                "class_names": None if class_names is None else list(class_names),
            }
            os.makedirs(os.path.join(staging, "new", "assets.extra"))
            with open(os.path.join(staging, "new", METADATA), "w") as f:
                json.dump(metadata, f)
            if os.path.exists(target):
                os.rename(target, os.path.join(staging, "old"))
            os.rename(os.path.join(staging, "new"), target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
