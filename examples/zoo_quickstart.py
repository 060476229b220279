"""Build a zoo model, train it a little on Fashion-MNIST, check its shift invariance.

A small ResNet-18 in the "aps" variant with circular padding is exactly invariant to
circular shifts of its input: its predictions do not change at all when the image is
rolled, while the baseline's do. Reads the Fashion-MNIST IDX files (default
/usr/share/datasets/fashion-mnist), or uses random images with --random.

    python examples/zoo_quickstart.py [--steps 60] [--random]
"""

import argparse
import gzip
import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import zoo  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split, count, random, data_dir):
    """`count` images padded from 28x28 to 32x32 (a multiple of the total stride 8
    of the CIFAR stem), scaled to [0, 1], and their labels."""
    if random:
        rng = np.random.default_rng(0 if split == "train" else 1)
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count)
    else:
        prefix = os.path.join(data_dir, "train" if split == "train" else "t10k")
        images = read_idx(f"{prefix}-images-idx3-ubyte.gz")[:count]
        labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz")[:count].astype("int64")
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]
    return images.astype("float32") / 255.0, labels


def agreement(model, images, shifts):
    """Fraction of (image, shift) whose predicted class equals the unshifted one,
    and the largest change of a class probability."""
    reference = model.predict(images, verbose=0)
    same, change = [], 0.0
    for dy, dx in shifts:
        shifted = model.predict(np.roll(images, (dy, dx), axis=(1, 2)), verbose=0)
        same.append(shifted.argmax(-1) == reference.argmax(-1))
        change = max(change, float(np.abs(shifted - reference).max()))
    return float(np.mean(same)), change


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--random", action="store_true", help="random images")
    parser.add_argument("--data-dir", default=FASHION_MNIST)
    args = parser.parse_args()

    count = args.steps * args.batch_size
    x_train, y_train = load("train", count, args.random, args.data_dir)
    x_test, y_test = load("test", 500, args.random, args.data_dir)
    shifts = np.random.default_rng(0).integers(0, 32, (8, 2))
    for variant in ("baseline", "aps"):
        keras.utils.set_random_seed(0)
        model = zoo.resnet18(
            variant=variant,
            num_classes=10,
            input_shape=(32, 32, 1),
            stem="cifar",
            width_multiplier=1 / 8,
            padding="circular",
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        params = sum(int(w.numpy().size) for w in model.trainable_weights)
        print(f"\n{model.name}: {params:,} trainable parameters")
        model.fit(x_train, y_train, batch_size=args.batch_size, epochs=1)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        same, change = agreement(model, x_test[:200], shifts)
        print(
            f"{model.name}: test accuracy {accuracy:.3f}; under 8 circular shifts the "
            f"predicted class stays the same for {same:.1%} of the images, the "
            f"largest probability change is {change:.2g}"
        )


if __name__ == "__main__":
    main()
