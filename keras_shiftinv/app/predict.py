"""Classify image files with a trained model: the `predict` command.

The model is a `.keras` file (for example RUN_DIR/best.keras of the train command)
or a SavedModel written by `export` (a version folder, or its base folder: then the
highest version). Each image is decoded with the model's number of channels
(grayscale or RGB) and given the model's input size as the train command gives it:
28x28 images zero-padded to 32x32, other sizes resized. TensorFlow backend only.
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_shiftinv.app import data, input_fit
from keras_shiftinv.app.export import METADATA
from keras_shiftinv.models import load_model, with_probabilities


def _saved_model_dir(path):
    """`path` if it is a SavedModel, else its highest numbered version; or None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [
        int(name)
        for name in os.listdir(path)
        if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb"))
    ]
    return os.path.join(path, str(max(versions))) if versions else None


class _Classifier:
    """`model_path` loaded: `input_shape` (H, W, C) and `probabilities(images)` of a
    uint8 batch; `class_names` when the run folder's config.json lists them."""

    def __init__(self, model_path):
        model_path = os.fspath(model_path)
        self.class_names = None
        # A model trained with --image-size is given images resized to it.
        fit = input_fit.recorded(model_path)
        self.image_size = fit[1].get("image_size") if fit else None
        if os.path.isdir(model_path):
            saved = _saved_model_dir(model_path)
            if saved is None:
                raise ValueError(
                    f"{model_path!r} (--model) is a folder without a SavedModel "
                    "(saved_model.pb) or numbered versions of one."
                )
            serve = tf.saved_model.load(saved).signatures["serving_default"]
            (spec,) = serve.structured_input_signature[1].values()
            self.input_shape = tuple(spec.shape[1:])
            self._predict = lambda images: serve(images)["probabilities"].numpy()
            # The model's own input size (a signature that also fits the
            # training images' size takes any size) and the class names.
            try:
                with open(os.path.join(saved, METADATA)) as f:
                    metadata = json.load(f)
                self.input_shape = tuple(metadata["input_shape"])
                self.class_names = metadata.get("class_names") or None
            except (OSError, ValueError, KeyError, TypeError):
                pass
            return
        model = with_probabilities(load_model(model_path))
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.class_names = input_fit.recorded_class_names(model_path)
        dtype = model.inputs[0].dtype

        def predict(images):
            outputs = model(tf.cast(images, dtype), training=False)
            return tf.cast(outputs, tf.float32).numpy()

        self._predict = predict

    def probabilities(self, images):
        return self._predict(tf.constant(images, tf.uint8))


def _fitted(path, shape, image_size=None):
    """The image file at `path` as uint8 (H, W, C) of the model's input `shape`,
    fitted as the model's run folder records (`image_size`) or by the rule of
    `keras_shiftinv.app.input_fit` (other sizes resized)."""
    try:
        image = data.decode_image_file(path, shape[-1])
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"Cannot read the image {path!r}: {error}") from error
    fit = input_fit.fit_options(
        tuple(image.shape),
        shape,
        image_size,
        resize=True,
        images=f"The image {path!r}",
    )
    if not fit:
        return image.numpy()
    ds = tf.data.Dataset.from_tensors((image, 0))
    batch, _ = next(iter(data.pipeline(ds, 1, training=False, **fit)))
    return np.clip(np.round(batch[0].numpy()), 0, 255).astype(np.uint8)


def predict(model_path, image_paths, on_error=None):
    """Classifies image files.

    Args:
        model_path: a `.keras` file or a SavedModel folder (see the module).
        image_paths: the image files.
        on_error: None: an image that cannot be read or classified raises.
            Else a function `on_error(path, message)` called for it, and the
            other images are classified.

    Returns:
        A list of `(path, class index, class name or None, probability)`, one
        per image classified.

    Raises:
        ValueError: a model that cannot be read, or (without `on_error`) an
            image.
    """
    classifier = _Classifier(model_path)
    results = []
    for path in image_paths:
        try:
            results.append(_classify(classifier, path))
        except ValueError as error:
            if on_error is None:
                raise
            on_error(path, str(error))
    return results


def _classify(classifier, path):
    if not os.path.isfile(path):
        raise ValueError(f"No image file at {path!r}.")
    # One image at a time: a SavedModel that fits its training images itself
    # takes images of two sizes.
    image = _fitted(path, classifier.input_shape, classifier.image_size)
    try:
        (row,) = classifier.probabilities(image[None])
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"The model cannot classify {path!r}: {error.message}"
        ) from error
    index = int(np.argmax(row))
    names = classifier.class_names
    name = names[index] if names and index < len(names) else None
    return path, index, name, float(row[index])


def predict_lines(model_path, image_paths):
    """`predict` as the lines the command prints, `PATH: class K (NAME) P`; an
    image that cannot be read is skipped, and reported after the others.

    Raises:
        ValueError: after the lines, naming the images that could not be read
            or classified.
    """
    errors = []
    results = predict(
        model_path, image_paths, on_error=lambda _, message: errors.append(message)
    )
    for path, index, name, probability in results:
        yield (
            f"{path}: class {index}{f' ({name})' if name else ''} "
            f"probability {probability:.4f}"
        )
    if errors:
        raise ValueError(
            errors[0]
            if len(image_paths) == 1
            else f"{len(errors)} of {len(image_paths)} images could not be "
            "classified: " + " ".join(errors)
        )
