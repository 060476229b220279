import gzip
import os
import shutil
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_shiftinv.app import data  # noqa: E402
from tests.training_helpers import write_idx  # noqa: E402

pytestmark = pytest.mark.tf_only


def _idx_folder(tmp_path, gz=True, n_train=10, n_test=4):
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 5, 6), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(tmp_path, prefix, images, labels, gz)
        arrays[prefix] = (images, labels)
    return arrays


def _as_numpy(ds):
    images, labels = zip(*ds.as_numpy_iterator(), strict=True)
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_what_was_written(tmp_path, gz):
    arrays = _idx_folder(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds, info = data.load("mnist", split, data_dir=str(tmp_path))
        images, labels = _as_numpy(ds)
        np.testing.assert_array_equal(images[..., 0], arrays[prefix][0])
        np.testing.assert_array_equal(labels, arrays[prefix][1])
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert info.image_shape == (5, 6, 1)
        assert info.num_examples == len(arrays[prefix][0])
        assert info.num_classes == 10 and info.class_names[3] == "3"
    _, info = data.load("fashion_mnist", "train", data_dir=str(tmp_path))
    assert info.class_names[0] == "T-shirt/top" and len(info.class_names) == 10


def test_idx_split_slices(tmp_path):
    arrays = _idx_folder(tmp_path, n_train=10)
    expected = arrays["train"][1]
    for split, part in (
        ("train[:80%]", expected[:8]),
        ("train[80%:]", expected[8:]),
        ("train[-3:]", expected[-3:]),
        ("train[2:5]", expected[2:5]),
    ):
        ds, info = data.load("mnist", split, data_dir=str(tmp_path))
        np.testing.assert_array_equal(_as_numpy(ds)[1], part)
        assert info.num_examples == len(part)
    with pytest.raises(ValueError, match="selects no examples"):
        data.load("mnist", "train[5:5]", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="split='validation'"):
        data.load("mnist", "validation", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="split='train\\[x\\]'"):
        data.load("mnist", "train[x]", data_dir=str(tmp_path))


def _corrupt(path, kind):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    if kind == "magic":
        raw = b"\x00\x00\x09" + raw[3:]
    elif kind == "truncated":
        raw = raw[:-5]
    if kind == "bad_gzip":
        with open(path, "wb") as f:
            f.write(gzip.compress(raw)[:-20])
        return
    with gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize(
    "gz, kind, message",
    [
        (False, "magic", "magic number"),
        (True, "magic", "magic number"),
        (False, "truncated", "truncated"),
        (True, "truncated", "truncated"),
        (True, "bad_gzip", "cannot read"),
    ],
)
def test_corrupt_idx_file_is_a_clear_error(tmp_path, gz, kind, message):
    _idx_folder(tmp_path, gz=gz)
    path = str(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    _corrupt(path, kind)
    with pytest.raises(ValueError, match=message) as error:
        data.load("mnist", "train", data_dir=str(tmp_path))
    assert path in str(error.value)


def test_idx_label_count_mismatch(tmp_path):
    arrays = _idx_folder(tmp_path)
    write_idx(tmp_path, "train", arrays["train"][0], arrays["train"][1][:-1], True)
    with pytest.raises(ValueError, match="10 images but .* 9 labels"):
        data.load("mnist", "train", data_dir=str(tmp_path))


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DataNotFoundError) as error:
        data.load("fashion_mnist", "train", data_dir=str(tmp_path))
    text = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in text
    assert "--data-dir" in text and "tfds:fashion_mnist" in text
    with pytest.raises(data.DataNotFoundError, match="tfds:mnist"):
        data.load("mnist", "train")
    with pytest.raises(data.DataNotFoundError, match="needs data_dir"):
        data.load("folder", "train")
    assert issubclass(data.DataNotFoundError, ValueError)


def test_ensure_fashion_mnist(tmp_path, monkeypatch):
    present = tmp_path / "present"
    present.mkdir()
    _idx_folder(present)
    assert data.ensure_fashion_mnist(str(present)) == str(present)

    missing = tmp_path / "missing"
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(missing))
    with pytest.raises(data.DataNotFoundError, match="apt-get install"):
        data.ensure_fashion_mnist()

    calls = []

    class Done:
        def __init__(self, returncode):
            self.returncode = returncode

    def fake_run(cmd, check):
        calls.append(cmd)
        if cmd[:2] == ["apt-get", "install"] and ["apt-get", "update"] in calls:
            missing.mkdir()
            _idx_folder(missing)
            return Done(0)
        return Done(100 if cmd[:2] == ["apt-get", "install"] else 0)

    monkeypatch.setattr(data.subprocess, "run", fake_run)
    monkeypatch.setattr(data.os, "geteuid", lambda: 0)
    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/" + name)
    assert data.ensure_fashion_mnist(install=True) == str(missing)
    install = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
    assert calls == [install, ["apt-get", "update"], install]


def _write_image(path, array):
    from PIL import Image

    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def _image_folder(root, size=(6, 5), channels=3):
    """Two classes, PNG and JPEG; returns {file name: (array, label)} of the PNGs."""
    rng = np.random.default_rng(1)
    written = {}
    for label, name in enumerate(("cat", "dog")):
        os.makedirs(root / name, exist_ok=True)
        for i in range(3):
            array = rng.integers(0, 256, size + (channels,), dtype=np.uint8)
            _write_image(root / name / f"{i}.png", array)
            written[f"{name}/{i}.png"] = (array, label)
        _write_image(root / name / "x.jpg", np.full(size + (channels,), 90, np.uint8))
    return written


FOLDER_SPLITS = ("train", "validation", "test")


def _load_splits(root, **kwargs):
    """(images, labels, infos) of the three splits of a folder without split
    folders, concatenated."""
    loaded = [
        data.load("folder", s, data_dir=str(root), **kwargs) for s in FOLDER_SPLITS
    ]
    arrays = [_as_numpy(ds) for ds, _ in loaded]
    images = np.concatenate([a[0] for a in arrays])
    labels = np.concatenate([a[1] for a in arrays])
    return images, labels, [info for _, info in loaded]


def test_folder_reader(tmp_path):
    written = _image_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="Skipped 1 corrupt"):
        (tmp_path / "dog" / "broken.png").write_bytes(b"this is not a png file")
        images, labels, infos = _load_splits(tmp_path)
    info = infos[0]
    assert info.class_names == ("cat", "dog") and info.num_classes == 2
    assert info.image_shape == (6, 5, 3)
    assert sum(i.num_examples for i in infos) == 8
    assert images.shape == (8, 6, 5, 3) and images.dtype == np.uint8
    assert sorted(labels) == [0] * 4 + [1] * 4
    pngs = {a.tobytes(): label for a, label in written.values()}
    found = [
        pngs.get(im.tobytes()) == lab for im, lab in zip(images, labels, strict=True)
    ]
    assert sum(found) == 6  # every PNG, losslessly, with its label
    jpegs = images[np.all(np.abs(images.astype(int) - 90) <= 2, axis=(1, 2, 3))]
    assert len(jpegs) == 2


def test_folder_truncated_image_is_skipped(tmp_path):
    _image_folder(tmp_path)
    png = (tmp_path / "cat" / "0.png").read_bytes()
    (tmp_path / "cat" / "truncated.png").write_bytes(png[: len(png) // 2])
    images, _, infos = _load_splits(tmp_path)
    # The header looks fine until decoding.
    assert sum(i.num_examples for i in infos) == 9
    assert len(images) == 8


def test_folder_sizes_grayscale_and_splits(tmp_path):
    for split in ("train", "test"):
        _image_folder(tmp_path / split, size=(7, 7), channels=1)
    _write_image(tmp_path / "train" / "cat" / "big.png", np.zeros((9, 9, 1), np.uint8))
    ds, info = data.load("folder", "test", data_dir=str(tmp_path))
    assert info.image_shape == (7, 7, 1) and info.num_examples == 8
    # Refused at load time, before any training: the headers of every image.
    with pytest.raises(ValueError, match=r"9x9 \(cat/big.png\).*--image-size") as e:
        data.load("folder", "train", data_dir=str(tmp_path))
    assert str(tmp_path / "train") in str(e.value) and "7x7" in str(e.value)
    ds, info = data.load("folder", "train", str(tmp_path), image_size=(4, 3))
    images, _ = _as_numpy(ds)
    assert images.shape == (9, 4, 3, 1) and info.image_shape == (4, 3, 1)
    with pytest.raises(data.DataNotFoundError, match="validation.*--test-split"):
        data.load("folder", "validation", data_dir=str(tmp_path))


def _distinct_images(root, per_class, classes=3):
    """Every image a different constant value: images identify their file."""
    for k in range(classes):
        os.makedirs(root / f"c{k}")
        for i in range(per_class):
            value = k * per_class + i
            _write_image(root / f"c{k}" / f"{i}.png", np.full((4, 4, 1), value, "u1"))


def test_folder_without_split_folders_is_split_disjointly(tmp_path):
    _distinct_images(tmp_path, per_class=20)
    parts = {}
    for split in FOLDER_SPLITS:
        images, labels = _as_numpy(data.load("folder", split, str(tmp_path))[0])
        parts[split] = set(zip(images[:, 0, 0, 0], labels, strict=True))
        # Every class is in every split, in its share.
        share = 16 if split == "train" else 2
        assert sorted(np.bincount(labels)) == [share] * 3
    assert not parts["train"] & parts["validation"]
    assert not parts["train"] & parts["test"]
    assert not parts["validation"] & parts["test"]
    assert len(parts["train"] | parts["validation"] | parts["test"]) == 60
    # The same split for every reader.
    images, _ = _as_numpy(data.load("folder", "test", str(tmp_path))[0])
    assert set(images[:, 0, 0, 0]) == {v for v, _ in parts["test"]}
    # Slices of a split stay within it and cover it.
    head, _ = data.load("folder", "train[:50%]", data_dir=str(tmp_path))
    tail, _ = data.load("folder", "train[50%:]", data_dir=str(tmp_path))
    values = np.concatenate([_as_numpy(head)[0], _as_numpy(tail)[0]])[:, 0, 0, 0]
    assert sorted(values) == sorted(v for v, _ in parts["train"])
    with pytest.raises(data.DataNotFoundError, match="--test-split"):
        data.load("folder", "extra", data_dir=str(tmp_path))


def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.load("folder", "train", data_dir=str(tmp_path))
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        with pytest.warns(UserWarning, match="'cat' has no images"):
            data.load("folder", "train", data_dir=str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="does not exist"):
        data.load("folder", "train", data_dir=str(tmp_path / "nowhere"))


def test_tfds_path_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        ds, info = data.load("cifar10", "train", data_dir=str(tmp_path))
        images, labels = _as_numpy(ds)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.max() < 10
    assert info.num_classes == 10 and len(info.class_names) == 10
    assert info.image_shape == (32, 32, 3) and info.num_examples == 5


def test_tfds_failures_say_how_to_get_the_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DataNotFoundError, match="Unknown data set name"):
        data.load("no_such_dataset_xyz", "train", data_dir=str(tmp_path))

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.DataNotFoundError) as error:
        data.load("tfds:cifar10", "train", data_dir=str(tmp_path))
    assert "download_and_prepare" in str(error.value)
    assert str(tmp_path) in str(error.value)
    with pytest.raises(data.DataNotFoundError, match="manual"):
        data.load("imagenet2012", "train", data_dir=str(tmp_path))


def test_tfds_missing_module_is_named_not_the_network(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def broken(*args, **kwargs):
        # As tfds fails: the ImportError is the cause of another error.
        try:
            raise ModuleNotFoundError(
                "No module named 'importlib_resources'", name="importlib_resources"
            )
        except ImportError as e:
            raise RuntimeError("Failed to construct dataset cifar10") from e

    monkeypatch.setattr(tfds, "load", broken)
    with pytest.raises(ValueError) as error:
        data.load("tfds:cifar10", "train", data_dir=str(tmp_path))
    message = str(error.value)
    assert "'importlib_resources' is missing" in message
    assert "pip install importlib_resources" in message
    assert "internet" not in message and "download" not in message

    # tensorflow-datasets itself not importable: the same kind of message.
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ValueError, match="'tensorflow_datasets' is missing"):
        data.load("cifar10", "train", data_dir=str(tmp_path))


def _numbered(n=6, size=(8, 8), channels=1):
    """Distinct images, label = index, so a batch element names its source."""
    rng = np.random.default_rng(2)
    images = rng.integers(1, 256, (n,) + size + (channels,), dtype=np.uint8)
    return images, tf.data.Dataset.from_tensor_slices((images, np.arange(n)))


def test_pipeline_eval_shapes_and_pad_to():
    images, ds = _numbered()
    batches = list(data.pipeline(ds, 4, training=False, pad_to=12).as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(4, 12, 12, 1), (2, 12, 12, 1)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(6))  # no shuffle when evaluating
    expected = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)]).astype(np.float32)
    np.testing.assert_array_equal(x, expected)


def test_pipeline_image_size_resizes_any_size():
    ds = tf.data.Dataset.from_generator(
        lambda: ((np.full((h, h + 1, 3), 7, np.uint8), 0) for h in (5, 9)),
        output_signature=(
            tf.TensorSpec((None, None, 3), tf.uint8),
            tf.TensorSpec((), tf.int64),
        ),
    )
    with pytest.raises(ValueError, match="image_size"):
        data.pipeline(ds, 2, training=False)
    x, _ = next(iter(data.pipeline(ds, 2, training=False, image_size=6)))
    assert x.shape == (2, 6, 6, 3)
    np.testing.assert_allclose(x.numpy(), 7.0, atol=1e-4)


def _crop_flips(image, padding):
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)])
    h, w = image.shape[:2]
    for oy in range(2 * padding + 1):
        for ox in range(2 * padding + 1):
            crop = padded[oy : oy + h, ox : ox + w]
            yield crop
            yield crop[:, ::-1]


def test_crop_flip_is_a_shift_or_flip_of_the_padded_image():
    images, ds = _numbered(n=16)
    batches = data.pipeline(ds, 8, training=True, augment="crop_flip", seed=3)
    x, y = (np.concatenate(v) for v in zip(*batches.as_numpy_iterator(), strict=True))
    assert sorted(y) == list(range(16))  # shuffled, nothing lost
    for out, label in zip(x, y, strict=True):
        assert any(np.array_equal(out, c) for c in _crop_flips(images[label], 4))
    changed = [
        not np.array_equal(out, images[label]) for out, label in zip(x, y, strict=True)
    ]
    assert sum(changed) >= 12  # 1 in 162 of (crop, flip) leaves an image as it was


def test_pipeline_deterministic_with_seed():
    _, ds = _numbered(n=16)

    def epochs(seed):
        p = data.pipeline(ds, 5, training=True, augment="crop_flip", seed=seed)
        return [np.concatenate([b[0] for b in p.as_numpy_iterator()]) for _ in (0, 1)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # each epoch differs
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"augment": "flip"}, "augment"),
        ({"pad_to": 4}, "pad_to"),
        ({"image_size": (2, 0)}, "image_size"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_pipeline_bad_arguments(kwargs, arg):
    _, ds = _numbered()
    args = {"batch_size": 2, "training": True, **kwargs}
    with pytest.raises(ValueError, match=arg):
        data.pipeline(ds, **args)


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "gif"])
@pytest.mark.parametrize("mode", ["L", "RGB", "P", "LA", "RGBA"])
def test_image_header_gives_the_size_and_channels_decoding_gives(tmp_path, ext, mode):
    from PIL import Image

    if (ext, mode) in {("jpg", "P"), ("jpg", "LA"), ("jpg", "RGBA"), ("bmp", "LA")}:
        pytest.skip("PIL cannot write this mode in this format")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    path = tmp_path / f"x.{ext}"
    image.convert(mode).save(path)
    decoded = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    height, width, channels = data._image_header(str(path))
    assert (height, width) == tuple(decoded.shape[:2]) == (5, 7)
    assert channels == (1 if decoded.shape[-1] in (1, 2) else 3)


def test_folder_channels_are_one_policy_for_all_images(tmp_path):
    """Gray and colour images mixed: every image gets 3 channels (gray ones their
    level in each), whatever the first image is; `channels=1` gives luma."""
    gray = np.full((4, 4, 1), 77, np.uint8)
    colour = np.zeros((4, 4, 3), np.uint8) + np.array([200, 100, 0], np.uint8)
    for k, (name, images) in enumerate((("a", [gray] * 5), ("b", [colour]))):
        os.makedirs(tmp_path / "test" / name)
        for i, image in enumerate(images):
            _write_image(tmp_path / "test" / name / f"{k}{i}.png", image)
    ds, info = data.load("folder", "test", str(tmp_path))
    assert info.image_shape == (4, 4, 3)
    images, labels = _as_numpy(ds)
    assert (images[labels == 0] == 77).all()
    assert (images[labels == 1] == [200, 100, 0]).all()
    ds, info = data.load("folder", "test", str(tmp_path), channels=1)
    images, labels = _as_numpy(ds)
    assert info.image_shape == (4, 4, 1)
    luma = round(0.299 * 200 + 0.587 * 100)
    assert (images[labels == 1] == luma).all() and (images[labels == 0] == 77).all()


def test_train_data_have_one_channel_count_and_size_and_two_classes(tmp_path):
    """The test split gets the training images' channels (gray training images,
    a colour test image: both 1 channel), a test split of another size is refused
    before training, naming --image-size, and so is a single class."""
    from keras_shiftinv.app.training import TrainConfig, make_datasets

    gray = np.full((4, 4, 1), 50, np.uint8)
    for split, classes in (("train", "ab"), ("test", "ab")):
        for name in classes:
            os.makedirs(tmp_path / split / name)
            for i in range(4):
                _write_image(tmp_path / split / name / f"{i}.png", gray)
    _write_image(tmp_path / "test" / "b" / "c.png", np.full((4, 4, 3), 9, np.uint8))
    config = TrainConfig(
        dataset="folder", data_dir=str(tmp_path), batch_size=4, validation_split=0.25
    )
    datasets = make_datasets(config)
    assert datasets.input_shape == (4, 4, 1)
    for part in (datasets.train, datasets.test):
        assert part.element_spec[0].shape[1:] == (4, 4, 1)
    assert len(_as_numpy(datasets.test.unbatch())[0]) == 9
    _write_image(tmp_path / "test" / "b" / "c.png", np.full((6, 6, 3), 9, np.uint8))
    with pytest.raises(ValueError, match="--image-size"):
        make_datasets(config)
    (tmp_path / "test" / "b" / "c.png").unlink()
    for split in ("train", "test"):
        shutil.rmtree(tmp_path / split / "b")
    with pytest.raises(ValueError, match="1 class \\(a\\): a classifier needs two"):
        make_datasets(config)


def test_a_class_folder_linked_from_outside_is_read_with_a_warning(tmp_path):
    _image_folder(tmp_path / "data" / "test")
    os.rename(tmp_path / "data" / "test" / "dog", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "test" / "dog")
    with pytest.warns(UserWarning, match="dog is a link to .*elsewhere, outside"):
        _, info = data.load("folder", "test", str(tmp_path / "data"))
    assert info.class_names == ("cat", "dog") and info.num_examples == 8
