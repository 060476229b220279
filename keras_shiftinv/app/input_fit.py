"""The input contract of a trained model: how images of a data set are given the
model's input size.

One rule, used by `train`, `evaluate`, `predict`, `export` and
benchmarks/reproduce.py alike:
- an explicit `image_size` resizes (bilinear, antialiased) to it;
- images that have the model's input size are left as they are;
- 28x28 images (MNIST, Fashion-MNIST) are zero-padded, centred, to 32x32, which the
  CIFAR stem halves down to 4x4 without odd sizes;
- `predict` resizes any other size to the model's input; `evaluate` refuses it.

The result is the options of `keras_shiftinv.app.data.pipeline` (`{}`,
`{"pad_to": (h, w)}` or `{"image_size": (h, w)}`). The train command records it in
its run folder's config.json (key "input_fit", with the images' own size), so a
model trained on 28x28 images accepts them everywhere: `evaluate` and `predict`
fit them as training did, and `export` builds the fit into the served signature.
Rescaling to [0, 1] is the model's own first layer.
"""

import json

from keras_shiftinv.app.run_folder import RunFolder
from keras_shiftinv.validation import standardize_pair

# Source image size -> the input size the train command gives it.
PAD_RULES = {(28, 28): (32, 32)}


def fit_options(
    image_shape,
    model_shape=None,
    image_size=None,
    resize=False,
    images="the images",
    model="the model",
):
    """The `pipeline` options that give images of `image_shape` a model's input.

    Args:
        image_shape: `(height, width, channels)` of the images; height and width may
            be None when the images differ in size.
        model_shape: `(height, width, channels)` of the model's input, or None for a
            model not built yet (the train command): then the rule picks its size.
        image_size: int or `(height, width)`: resize to it (the train command's
            `--image-size`); it must be the model's input size.
        resize: resize images of any other size to the model's input instead of
            refusing them (`predict`).
        images, model: how error messages name the images and the model.

    Returns:
        A dict: `{}`, `{"pad_to": (h, w)}` or `{"image_size": (h, w)}`.

    Raises:
        ValueError: channels that differ, an `image_size` that is not the model's
            input size, or images of a size the model does not take.
    """
    height, width, channels = image_shape
    wanted = None if model_shape is None else tuple(model_shape[:2])
    if model_shape is not None and channels != model_shape[-1]:
        raise ValueError(
            f"{images} have {channels} channel(s), {model} takes "
            f"{model_shape[-1]} (input shape {tuple(model_shape)})."
        )
    if image_size is not None:
        size = standardize_pair(image_size, "image_size")
        if wanted is not None and None not in wanted and size != wanted:
            raise ValueError(
                f"Invalid image_size={image_size}: {model} takes "
                f"{wanted[0]}x{wanted[1]} images."
            )
        return {} if size == (height, width) else {"image_size": size}
    if height is None or width is None:
        if wanted is not None and None not in wanted and resize:
            return {"image_size": wanted}
        raise ValueError(
            f"{images} differ in size: pass image_size (--image-size) to resize them."
        )
    if wanted is None or None in wanted or wanted == (height, width):
        padded = PAD_RULES.get((height, width)) if wanted is None else None
        return {"pad_to": padded} if padded else {}
    if PAD_RULES.get((height, width)) == wanted:
        return {"pad_to": wanted}
    if resize:
        return {"image_size": wanted}
    raise ValueError(
        f"{images} are {height}x{width}, {model} takes {wanted[0]}x{wanted[1]}: "
        f"pass image_size (--image-size {wanted[0]}) to resize them, or use a data "
        "set of that size."
    )


def fitted_shape(image_shape, options):
    """`(height, width, channels)` of images of `image_shape` after `options`."""
    size = options.get("pad_to") or options.get("image_size")
    return (*size, image_shape[2]) if size else tuple(image_shape)


def record(image_shape, options):
    """The config.json entry of a run: the images' size and the options."""
    return {
        "image_shape": list(image_shape),
        **{key: list(value) for key, value in options.items()},
    }


def _run_config(model_path):
    """The config.json of the run folder holding `model_path`, or None."""
    path = RunFolder.of_model(model_path).config
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def recorded(model_path):
    """The `(image_shape, options)` a run folder's config.json records for the
    model saved in it at `model_path`, or None (another file, an older run)."""
    entry = (_run_config(model_path) or {}).get("input_fit")
    if not isinstance(entry, dict) or "image_shape" not in entry:
        return None
    options = {k: tuple(v) for k, v in entry.items() if k in ("pad_to", "image_size")}
    return tuple(entry["image_shape"]), options


def recorded_class_names(model_path):
    """The class names, in output order, a run folder's config.json records for
    the model saved in it at `model_path`, or None (another file, none recorded)."""
    names = (_run_config(model_path) or {}).get("class_names")
    if not isinstance(names, list) or not names:
        return None
    return tuple(str(name) for name in names)
