"""Image classification data as `tf.data`: IDX files, image folders, tfds.

`load(name, split)` gives an unbatched `tf.data.Dataset` of `(uint8 image [H, W, C],
int64 label)` and a `DatasetInfo`; `pipeline(ds, ...)` turns it into float32 batches
with raw pixel values in [0, 255] (models rescale inside), optionally augmented.

Sources, by `name`:

- `"fashion_mnist"`: the IDX files of Fashion-MNIST, in `data_dir` or by default in
  /usr/share/datasets/fashion-mnist (Debian's `dataset-fashion-mnist`).
- `"mnist"`: the IDX files of MNIST in `data_dir` (there is no default folder).
- `"folder"`: `data_dir` holds one sub-folder per class with .jpg/.jpeg/.png/.bmp/.gif
  images. If `data_dir` has sub-folders named after splits (`train/`, `test/`,
  `validation/` or `val/`), each split is read from its own folder; otherwise
  the images of each class are split into "train" (80%), "validation" (10%) and
  "test" (10%, at least one image of every class with 3 or more) by a fixed
  pseudo-random permutation: the splits are disjoint whoever reads them.
- `"tfds:NAME"`, or any other name: the tensorflow-datasets data set NAME
  (`tfds.load(NAME, split, data_dir, as_supervised=True)`), downloaded and prepared by
  tfds when it can be.

Splits: "train" and "test" for IDX files (tfds' names for tfds), and slices of any
split in tfds' syntax: "train[:90%]", "train[90%:]", "test[:1000]". A slice of IDX
files is a contiguous range (the files are already shuffled by their authors). Image
folders are put into one fixed pseudo-random order (seed 0) before slicing, so
"train[:90%]" and "train[90%:]" split every class; this is the order of the data set.

Corrupt data: an IDX file with a wrong magic number, size or gzip stream raises a
`ValueError` naming the file. An image whose header is not that of a
JPEG/PNG/BMP/GIF file is skipped at `load` time and the skips are counted in one
warning (they are not in `num_examples`); an image that fails to decode later (for
instance a truncated file with a valid header) is skipped by tf.data with a logged
warning. A folder without images, or a split with no examples, raises a `ValueError`.
"""

import dataclasses
import gzip
import logging
import os
import re
import shutil
import struct
import subprocess
import warnings
import zlib

import numpy as np
import tensorflow as tf

from keras_shiftinv.app.metrics import shift_images
from keras_shiftinv.validation import (
    standardize_choice,
    standardize_int,
    standardize_pair,
)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = {
    "train": ("train",),
    "test": ("test",),
    "validation": ("validation", "val"),
}
# A folder without split folders: the share of each class in "validation" and in
# "test", and the seed of the permutation that picks them (fixed, so that train and
# evaluate see the same test images).
FOLDER_HELD_OUT = 0.1
FOLDER_SPLIT_SEED = 0
_SPLIT_FLAGS = "--test-split of train, --split of evaluate"
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_UBYTE = 0x08
_AUTOTUNE = tf.data.AUTOTUNE

logger = logging.getLogger(__name__)


class DataNotFoundError(ValueError):
    """The data set is not where it was looked for; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    Args:
        name: the name given to `load`.
        num_classes: number of classes; labels are 0..num_classes-1.
        image_shape: `(H, W, C)` of the images; H and W are None when the images
            have different sizes (then `pipeline` needs `image_size`).
        class_names: one name per class, in label order.
        num_examples: number of examples in the split, or None if unknown.
    """

    name: str
    num_classes: int
    image_shape: tuple
    class_names: tuple
    num_examples: int | None


def load(name, split, data_dir=None, *, image_size=None, channels=None):
    """Loads one split of a data set.

    Args:
        name: "fashion_mnist", "mnist" (IDX files), "folder" (one sub-folder per
            class), "tfds:NAME" or any other tensorflow-datasets name.
        split: "train", "test" (or another split of the source), optionally sliced
            as in tfds: "train[:90%]", "train[-5000:]".
        data_dir: where the data is. Default: /usr/share/datasets/fashion-mnist for
            "fashion_mnist", tfds' default for tfds; required for "mnist" and
            "folder".
        image_size: folders only: `(height, width)` (or an int) to resize every
            image to. Default: every image must have the same size (checked on
            the headers of all of them, before any is decoded).
        channels: folders only: 1 or 3, the channels every image is converted
            to (the model's). Default: 3 if any image of the split has colour,
            else 1.

    Returns:
        `(dataset, info)`: an unbatched `tf.data.Dataset` of `(uint8 image [H, W,
        C], int64 label)` and a `DatasetInfo`.

    Raises:
        DataNotFoundError: the data is missing; the message says how to get it.
        ValueError: a bad argument, a corrupt IDX file, an empty folder or split.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid name={name!r}: expected a data set name.")
    if channels is not None:
        standardize_choice(channels, "channels", (1, 3))
    if image_size is not None and name != "folder":
        raise ValueError(
            f"Invalid image_size={image_size!r} for name={name!r}: load() resizes "
            "only image folders; use pipeline(image_size=...) for other sources."
        )
    base, bounds = _parse_split(split)
    if name in ("fashion_mnist", "mnist"):
        return _load_idx(name, split, base, bounds, data_dir)
    if name == "folder":
        return _load_folder(split, base, bounds, data_dir, image_size, channels)
    return _load_tfds(name.removeprefix("tfds:"), split, data_dir)


def fit_images(images, image_size=None, pad_to=None):
    """Images `[..., H, W, C]` resized to `image_size` (bilinear, antialiased; the
    result is float32), then zero-padded, centred, to `pad_to`: the options of
    `keras_shiftinv.app.input_fit.fit_options`. `pipeline` and the exported serving
    signature both fit images with it."""
    if image_size is not None:
        images = tf.image.resize(images, image_size, antialias=True)
    if pad_to is not None:
        shape = tf.shape(images)
        height, width = shape[-3], shape[-2]
        top, left = (pad_to[0] - height) // 2, (pad_to[1] - width) // 2
        spatial = [
            [top, pad_to[0] - height - top],
            [left, pad_to[1] - width - left],
            [0, 0],
        ]
        images = tf.pad(images, [[0, 0]] * (images.shape.rank - 3) + spatial)
    return images


def pipeline(
    ds,
    batch_size,
    training,
    augment="none",
    image_size=None,
    pad_to=None,
    shuffle_buffer=10000,
    seed=None,
    crop_padding=4,
):
    """Batches a data set from `load` for a model.

    Each image is cast to float32 (raw pixel values in [0, 255]), resized to
    `image_size` if given, zero-padded (centred) to `pad_to` if given and, when
    `training`, shuffled and augmented. Batches are prefetched.

    Args:
        ds: unbatched `tf.data.Dataset` of `(image [H, W, C], label)`.
        batch_size: positive int.
        training: shuffle and augment (evaluation data: False).
        augment: "none", or "crop_flip": zero-pad by `crop_padding` on every side,
            crop a random window of the original size and flip left-right with
            probability 1/2. Only applied when `training`.
        image_size: `(height, width)` or int: resize (bilinear, antialiased) to it.
            Needed when the images have different sizes.
        pad_to: `(height, width)` or int: zero-pad each image, centred, to this size
            (28x28 -> 32x32 with `pad_to=32`).
        shuffle_buffer: size of the shuffle buffer when `training`.
        seed: int for a reproducible order and augmentation (each epoch still
            differs), or None.
        crop_padding: padding of "crop_flip", in pixels.

    Returns:
        A `tf.data.Dataset` of `(float32 images [B, H, W, C], int64 labels [B])`.
    """
    batch_size = standardize_int(batch_size, "batch_size")
    augment = standardize_choice(augment, "augment", ("none", "crop_flip"))
    crop_padding = standardize_int(crop_padding, "crop_padding", minimum=0)
    shuffle_buffer = standardize_int(shuffle_buffer, "shuffle_buffer")
    image_size = (
        None if image_size is None else standardize_pair(image_size, "image_size")
    )
    pad_to = None if pad_to is None else standardize_pair(pad_to, "pad_to")
    if seed is not None:
        standardize_int(seed, "seed", minimum=0)
    spec = ds.element_spec[0]
    if spec.shape.rank != 3:
        raise ValueError(
            f"pipeline() expects unbatched images [H, W, C], got {spec.shape}."
        )
    if image_size is None and not spec.shape[:2].is_fully_defined():
        raise ValueError(
            "The images have no fixed size: pass image_size=(height, width)."
        )
    height, width = image_size or spec.shape[:2]
    if pad_to is not None:
        if pad_to[0] < height or pad_to[1] < width:
            raise ValueError(
                f"Invalid pad_to={pad_to!r}: smaller than the images "
                f"({height}x{width})."
            )
        height, width = pad_to

    channels = spec.shape[2]

    def resize(image, label):
        return fit_images(image, image_size=image_size), label

    def prepare(images, labels, seed=None):
        images = fit_images(tf.cast(images, tf.float32), pad_to=pad_to)
        if seed is not None:
            images = _crop_flip(images, seed, crop_padding)
        images = tf.ensure_shape(images, (None, height, width, channels))
        return images, tf.cast(labels, tf.int64)

    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if image_size is not None:
        ds = ds.map(resize, num_parallel_calls=_AUTOTUNE)
    ds = ds.batch(batch_size)
    if training and augment == "crop_flip":
        # One stateless seed per batch from a seeded random stream: the
        # augmentation is reproducible, and differs between epochs.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds.batch(2))
        ds = ds.map(
            lambda batch, pair: prepare(*batch, pair), num_parallel_calls=_AUTOTUNE
        )
    else:
        ds = ds.map(prepare, num_parallel_calls=_AUTOTUNE)
    return ds.prefetch(_AUTOTUNE)


def relabel(ds, info, class_names, model="the model"):
    """`ds` (from `load`) with labels that index `class_names`, the classes a
    model was trained on, in its output order.

    The same names in the same order leave `ds` as it is; a subset of them (an
    image folder with fewer classes) is mapped by name.

    Raises:
        ValueError: the data has classes that are not in `class_names`, named.
    """
    names = tuple(info.class_names)
    class_names = tuple(class_names)
    if names == class_names:
        return ds
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise ValueError(
            f"The classes of {info.name!r} are not those {model} was trained on: "
            f"{_quoted(unknown)} unknown to it (its classes: "
            f"{_quoted(class_names)}; the data's: {_quoted(names)}). Use data "
            "whose class names (class sub-folders) are those of training."
        )
    table = tf.constant([class_names.index(name) for name in names], tf.int64)
    return ds.map(
        lambda image, label: (image, tf.gather(table, label)),
        num_parallel_calls=_AUTOTUNE,
    )


def _quoted(names):
    return ", ".join(repr(name) for name in names)


def ensure_fashion_mnist(data_dir=None, install=False):
    """Returns the folder of the Fashion-MNIST IDX files, installing them if asked.

    With `install=True`, the default folder missing, and this process root with
    apt-get available, runs `apt-get install -y dataset-fashion-mnist` (and
    `apt-get update` then the install again if the first install fails).

    Args:
        data_dir: folder to look in; default /usr/share/datasets/fashion-mnist.
        install: allow installing Debian's dataset-fashion-mnist package.

    Returns:
        The folder holding the IDX files.

    Raises:
        DataNotFoundError: the files are not there (and could not be installed);
            the message says how to get them.
    """
    folder = data_dir or FASHION_MNIST_DIR
    if _idx_files(folder, "train") and _idx_files(folder, "test"):
        return folder
    can_install = (
        install
        and data_dir is None
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
    )
    if can_install:
        install_cmd = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
        for commands in ([install_cmd], [["apt-get", "update"], install_cmd]):
            logger.warning("Fashion-MNIST is missing: running %s", commands)
            if all(
                subprocess.run(cmd, check=False).returncode == 0 for cmd in commands
            ):
                break
        if _idx_files(folder, "train") and _idx_files(folder, "test"):
            return folder
    raise DataNotFoundError(_idx_help("fashion_mnist", folder))


def _parse_split(split):
    match = re.fullmatch(r"(\w+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?", str(split))
    if not isinstance(split, str) or match is None:
        raise ValueError(
            f"Invalid split={split!r}: expected a name such as 'train' or 'test', "
            "optionally sliced: 'train[:90%]', 'train[90%:]', 'test[:1000]'."
        )
    base, start, stop = match.groups()
    return base, (start, stop)


def _slice(n, bounds, split):
    """Index range [lo, hi) of `n` examples selected by a tfds-style slice."""

    def position(bound, default):
        if bound is None:
            return default
        if bound.endswith("%"):
            value = round(n * int(bound[:-1]) / 100)
            return value if not bound.startswith("-") else n + value
        return int(bound) if int(bound) >= 0 else n + int(bound)

    lo = min(max(position(bounds[0], 0), 0), n)
    hi = min(max(position(bounds[1], n), 0), n)
    if hi <= lo:
        raise ValueError(f"split={split!r} selects no examples out of {n}.")
    return lo, hi


def _idx_files(folder, base):
    """(images, labels) paths of an IDX split in `folder`, or None."""
    prefix = _IDX_PREFIX[base]
    found = []
    for kind, dims in (("images", 3), ("labels", 1)):
        names = [f"{prefix}-{kind}-idx{dims}-ubyte{ext}" for ext in (".gz", "")] + [
            f"{prefix}-{kind}.idx{dims}-ubyte{ext}" for ext in (".gz", "")
        ]
        paths = [os.path.join(folder, n) for n in names]
        found.append(next((p for p in paths if os.path.isfile(p)), None))
    return tuple(found) if all(found) else None


def _idx_help(name, folder):
    pretty = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}[name]
    files = "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    where = (
        f"not found in {folder}"
        if folder
        else "need a folder (data_dir / --data-dir) holding them"
    )
    ways = [f"pass data_dir (--data-dir) pointing to a folder with {files}"]
    if name == "fashion_mnist":
        ways.insert(0, "install them with `apt-get install dataset-fashion-mnist`")
    ways.append(f"use the tensorflow-datasets copy with the name 'tfds:{name}'")
    return f"{pretty} IDX files {where}: " + "; or ".join(ways) + "."


def read_idx(path, ndim):
    """Reads an IDX file of unsigned bytes (optionally gzipped) into a numpy array.

    Args:
        path: the file (".gz" is decompressed).
        ndim: expected number of dimensions (3 for images, 1 for labels).

    Returns:
        A uint8 numpy array with the file's shape.

    Raises:
        ValueError: naming the file, if it is not a valid IDX file of `ndim`
            dimensions (bad gzip stream, magic number, or size).
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"Corrupt IDX file {path}: cannot read it ({e}).") from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"Corrupt IDX file {path}: {len(raw)} bytes, shorter than its header."
        )
    magic = (0, 0, _IDX_UBYTE, ndim)
    if tuple(raw[:4]) != magic:
        raise ValueError(
            f"Corrupt IDX file {path}: magic number {raw[:4].hex()} is not "
            f"{bytes(magic).hex()} (unsigned bytes, {ndim} dimensions)."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(
            f"Corrupt IDX file {path}: shape {shape} needs {size} bytes of data, the "
            f"file has {len(raw) - header} (truncated or wrong file)."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _load_idx(name, split, base, bounds, data_dir):
    folder = data_dir or (FASHION_MNIST_DIR if name == "fashion_mnist" else None)
    if base not in _IDX_PREFIX:
        raise ValueError(
            f"Invalid split={split!r} for {name}: the IDX files have 'train' and "
            "'test' (a validation set is a slice, e.g. 'train[90%:]')."
        )
    paths = _idx_files(folder, base) if folder else None
    if paths is None:
        raise DataNotFoundError(_idx_help(name, folder))
    images = read_idx(paths[0], 3)
    labels = read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise ValueError(
            f"Corrupt IDX files: {paths[0]} has {len(images)} images but {paths[1]} "
            f"has {len(labels)} labels."
        )
    if labels.size and labels.max() >= 10:
        raise ValueError(
            f"Corrupt IDX file {paths[1]}: label {labels.max()} is not a digit 0..9."
        )
    lo, hi = _slice(len(images), bounds, split)
    images = images[lo:hi, :, :, None]
    labels = labels[lo:hi].astype(np.int64)
    class_names = (
        FASHION_MNIST_CLASSES
        if name == "fashion_mnist"
        else tuple(str(d) for d in range(10))
    )
    info = DatasetInfo(name, 10, images.shape[1:], class_names, len(images))
    return tf.data.Dataset.from_tensor_slices((images, labels)), info


def _split_folder(data_dir, base):
    candidates = SPLIT_FOLDERS.get(base, (base,))
    for folder in candidates:
        if os.path.isdir(os.path.join(data_dir, folder)):
            return os.path.join(data_dir, folder)
    if any(
        os.path.isdir(os.path.join(data_dir, f))
        for names in SPLIT_FOLDERS.values()
        for f in names
    ):
        raise DataNotFoundError(
            f"{data_dir} (--data-dir) has split folders but none for split "
            f"{base!r} ({_SPLIT_FLAGS}); looked for {', '.join(candidates)}."
        )
    if base not in SPLIT_FOLDERS:
        raise DataNotFoundError(
            f"{data_dir} (--data-dir) has no split folders, so its images are split "
            f"into 'train', 'validation' and 'test'; split {base!r} "
            f"({_SPLIT_FLAGS}) is none of them."
        )
    return data_dir


def _split_files(files, base, label):
    """The files of split `base` among one class' `files` in a folder without split
    folders: a fixed permutation cut into disjoint parts, `FOLDER_HELD_OUT` of them
    for "test" and as many for "validation" (one each from 3 files on), the rest
    for "train"."""
    held = max(1, round(FOLDER_HELD_OUT * len(files))) if len(files) >= 3 else 0
    order = np.random.default_rng((FOLDER_SPLIT_SEED, label)).permutation(len(files))
    parts = {
        "test": order[:held],
        "validation": order[held : 2 * held],
        "train": order[2 * held :],
    }
    return [files[i] for i in sorted(parts[base])]


def _class_folders(folder):
    return sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")
    )


def _image_header(path):
    """`(height, width, channels)` of an image file read from its header, without
    decoding it: channels 1 for grayscale, 3 for colour (as `decode_image_file`
    is then asked for); None for a file that is not a JPEG/PNG/BMP/GIF image;
    `(None, None, None)` for one whose header this does not understand."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not head.startswith(_IMAGE_SIGNATURES):
                return None
            if head.startswith(b"\x89PNG"):
                width, height = struct.unpack(">II", head[16:24])
                return height, width, 1 if head[25] in (0, 4) else 3  # gray(+alpha)
            if head.startswith(b"GIF"):
                width, height = struct.unpack("<HH", head[6:10])
                return height, width, 3
            if head.startswith(b"BM"):
                width, height, _, bits = struct.unpack("<iiHH", head[18:30])
                return abs(height), width, 1 if bits == 8 else 3
            f.seek(2)
            return _jpeg_header(f)
    except OSError:
        return None
    except struct.error:
        return None, None, None


def _jpeg_header(f):
    """(height, width, channels) from the frame header of a JPEG stream, read
    segment by segment after the start-of-image marker."""
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            return None, None, None
        marker = byte[0]
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            _, height, width, components = struct.unpack(">BHHB", f.read(6))
            return height, width, 1 if components == 1 else 3
        f.seek(length - 2, os.SEEK_CUR)


def _first_decodable(paths):
    for path in paths:
        try:
            return tf.io.decode_image(
                tf.io.read_file(path), channels=0, expand_animations=False
            )
        except tf.errors.InvalidArgumentError:
            continue
    raise ValueError(f"None of the {len(paths)} selected images can be decoded.")


def decode_image_file(path, channels):
    """uint8 [H, W, channels] of a JPEG/PNG/BMP/GIF file (a path tensor or
    string): RGB for 3 channels, luma (ITU-R 601 weights) for 1."""
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )
    if channels == 1:
        weights = tf.constant([0.299, 0.587, 0.114])
        luma = tf.reduce_sum(
            tf.cast(image, tf.float32) * weights, axis=-1, keepdims=True
        )
        image = tf.cast(tf.round(luma), tf.uint8)
    return image


def _folder_policy(folder, paths, headers, channels, image_size):
    """The channel count and size every image of a folder split is given, decided
    from the headers of all of them before any is decoded: colour if any image
    is (gray ones are converted, unless `channels` is given), and one size, or
    an error naming image_size (--image-size) when they differ and it is None."""
    known = [(path, h) for path, h in zip(paths, headers, strict=True) if h[0]]
    first = None if known else _first_decodable(paths)
    if channels is None:
        colour = any(h[2] == 3 for _, h in known)
        channels = 3 if colour or (first is not None and first.shape[-1] > 2) else 1
    if image_size:
        return channels, standardize_pair(image_size, "image_size")
    sizes = {}
    for path, header in known:
        sizes.setdefault(header[:2], path)
    if len(sizes) > 1:
        shown = ", ".join(
            f"{h}x{w} ({os.path.relpath(p, folder)})"
            for (h, w), p in list(sizes.items())[:3]
        )
        raise ValueError(
            f"The images in {folder} differ in size: {shown}"
            f"{', ...' if len(sizes) > 3 else ''}. Pass --image-size (image_size) "
            "to resize them all to one size."
        )
    return channels, next(iter(sizes)) if sizes else tuple(first.shape[:2])


def _load_folder(split, base, bounds, data_dir, image_size, channels):
    if not data_dir:
        raise DataNotFoundError(
            "name='folder' needs data_dir (--data-dir): a folder with one "
            "sub-folder of images per class."
        )
    if not os.path.isdir(data_dir):
        raise DataNotFoundError(f"Image folder {data_dir} does not exist.")
    folder = _split_folder(data_dir, base)
    if folder == data_dir:
        class_names = _class_folders(data_dir)
    else:
        # Labels must agree between splits: classes are the union over splits.
        splits = [
            os.path.join(data_dir, f)
            for names in SPLIT_FOLDERS.values()
            for f in names
            if os.path.isdir(os.path.join(data_dir, f))
        ]
        class_names = sorted({c for s in splits for c in _class_folders(s)})
    if not class_names:
        raise ValueError(
            f"Image folder {folder} has no class sub-folders: put the images of "
            "each class in a sub-folder named after the class."
        )
    paths, labels, headers, skipped = [], [], [], []
    root = os.path.realpath(data_dir)
    for label, class_name in enumerate(class_names):
        class_dir = os.path.join(folder, class_name)
        target = os.path.realpath(class_dir)
        if os.path.commonpath([root, target]) != root:
            warnings.warn(
                f"Class folder {class_dir} is a link to {target}, outside "
                f"{data_dir} (--data-dir): its images are read from there.",
                stacklevel=3,
            )
        files = (
            sorted(
                e.path
                for e in os.scandir(class_dir)
                if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if os.path.isdir(class_dir)
            else []
        )
        if not files:
            warnings.warn(
                f"Class {class_name!r} has no images in {folder}.", stacklevel=3
            )
        if folder == data_dir:
            files = _split_files(files, base, label)
        for path in files:
            header = _image_header(path)
            if header is not None:
                paths.append(path)
                labels.append(label)
                headers.append(header)
            else:
                skipped.append(path)
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} corrupt image file(s) in {folder} (not a "
            f"JPEG/PNG/BMP/GIF file), e.g. {skipped[0]}.",
            stacklevel=3,
        )
    if not paths:
        raise ValueError(
            f"Image folder {folder} has no readable images "
            f"({'/'.join(IMAGE_EXTENSIONS)}) in its class sub-folders."
        )
    order = np.random.default_rng(0).permutation(len(paths))
    lo, hi = _slice(len(paths), bounds, split)
    order = order[lo:hi]
    paths = np.asarray(paths)[order]
    labels = np.asarray(labels, np.int64)[order]
    headers = [headers[i] for i in order]
    channels, size = _folder_policy(folder, paths, headers, channels, image_size)

    def decode(path, label):
        return decode_image_file(path, channels), label, path

    def fit_size(image, label, path):
        if image_size is not None:
            image = tf.image.resize(image, size, antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        else:
            same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
            message = (
                f"Images in {folder} differ in size from the first one {size} "
                "(pass image_size to resize them); this one is"
            )
            check = tf.debugging.Assert(same, [message, path, tf.shape(image)])
            with tf.control_dependencies([check]):
                image = tf.identity(image)
        return tf.ensure_shape(image, size + (channels,)), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(decode, num_parallel_calls=_AUTOTUNE)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.map(fit_size, num_parallel_calls=_AUTOTUNE)
    info = DatasetInfo(
        "folder", len(class_names), size + (channels,), tuple(class_names), len(paths)
    )
    return ds, info


def _tfds_help(name, data_dir, error):
    where = data_dir or "~/tensorflow_datasets"
    text = (
        f"tensorflow-datasets could not get the data set {name!r} into {where} "
        f"({type(error).__name__}: {error}). Prepare it on a machine with internet "
        f'access: `python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}').download_and_prepare()\"`, then copy "
        f"~/tensorflow_datasets/{name} into {where} (or pass data_dir / "
        "--data-dir to where it is)."
    )
    if name.split("/")[0] == "imagenet2012" or "manual" in str(error).lower():
        text += (
            " This data set is downloaded by hand: put its archives in "
            f"{os.path.join(where, 'downloads', 'manual')} (tfds' manual_dir) first."
        )
    return text


def _missing_module(error):
    """The ImportError behind `error` (itself or a cause in its chain), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ImportError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _missing_module_error(name, error):
    module = getattr(error, "name", None) or str(error)
    return ValueError(
        f"tensorflow-datasets cannot load {name!r}: the Python module {module!r} "
        f"is missing ({type(error).__name__}: {error}). Install it in this "
        f"environment (pip install {module.split('.')[0]}) and run again."
    )


def _load_tfds(name, split, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise _missing_module_error(name, e) from e
    try:
        ds, tfds_info = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            as_supervised=True,
            with_info=True,
        )
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataNotFoundError(
            f"Unknown data set name {name!r}: use 'fashion_mnist', 'mnist', "
            "'folder' or a tensorflow-datasets name (tfds.list_builders())."
        ) from e
    except (KeyError, ValueError) as e:
        if "split" in str(e).lower():
            raise ValueError(f"Invalid split={split!r} for {name!r}: {e}") from e
        raise DataNotFoundError(_tfds_help(name, data_dir, e)) from e
    except Exception as e:  # noqa: BLE001 - download/prepare failures of any kind
        # A missing module fails the same way as a missing download: tell which.
        missing = _missing_module(e)
        if missing is not None:
            raise _missing_module_error(name, missing) from e
        raise DataNotFoundError(_tfds_help(name, data_dir, e)) from e
    image_key, label_key = tfds_info.supervised_keys
    label = tfds_info.features[label_key]
    try:
        num_examples = tfds_info.splits[split].num_examples
    except (KeyError, ValueError):
        cardinality = int(ds.cardinality())
        num_examples = cardinality if cardinality >= 0 else None
    if num_examples == 0:
        raise ValueError(f"split={split!r} of {name!r} has no examples.")
    ds = ds.map(
        lambda image, y: (tf.cast(image, tf.uint8), tf.cast(y, tf.int64)),
        num_parallel_calls=_AUTOTUNE,
    )
    info = DatasetInfo(
        name,
        int(label.num_classes),
        tuple(tfds_info.features[image_key].shape),
        tuple(label.names),
        num_examples,
    )
    return ds, info


def _crop_flip(images, seed, padding):
    """Per image: a random window of the image zero-padded by `padding`, then a
    left-right flip with probability 1/2. The window at offset (oy, ox) is the
    zero-filled shift by (padding - oy, padding - ox)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    batch = tf.shape(images)[:1]
    dy, dx = (
        tf.random.stateless_uniform(
            batch, s, minval=-padding, maxval=padding + 1, dtype=tf.int32
        )
        for s in (seeds[0], seeds[1])
    )
    images = shift_images(images, dy, dx, mode="crop", pad_mode="zero")
    flip = tf.random.stateless_uniform(batch, seeds[2]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
