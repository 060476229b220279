"""Build a zoo model, train it a little on Fashion-MNIST, check its shift invariance.

A small ResNet-18 in the "aps" variant with circular padding is exactly invariant to
circular shifts of its input: its predictions do not change at all when the image is
rolled, while the baseline's do. Reads Fashion-MNIST with `keras_shiftinv.app.data`
(IDX files, default /usr/share/datasets/fashion-mnist), or uses random images with
--random.

    python examples/zoo_quickstart.py [--steps 60] [--random]
"""

import argparse

import keras
import numpy as np

import zoo
from keras_shiftinv.app import data


def load(split, count, random, data_dir):
    """`count` images zero-padded from 28x28 to 32x32 (a multiple of the total
    stride 8 of the CIFAR stem), scaled to [0, 1], and their labels."""
    if random:
        rng = np.random.default_rng(0 if split == "train" else 1)
        images = rng.integers(0, 256, (count, 32, 32, 1)).astype("float32")
        return images / 255.0, rng.integers(0, 10, count)
    ds, _ = data.load("fashion_mnist", f"{split}[:{count}]", data_dir)
    batches = data.pipeline(ds, batch_size=1000, training=False, pad_to=32)
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in batches), strict=True)
    return np.concatenate(images) / 255.0, np.concatenate(labels)


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
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX files")
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
            pad_mode="circular",
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
