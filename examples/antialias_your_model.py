"""Antialias a Keras model you already have, keep its weights and fine-tune it.

Trains a small strided CNN on a slice of Fashion-MNIST (the stand-in for "your
model"), rewrites it with `keras_shiftinv.antialias` (strided convs run at stride 1
and blur after their ReLU, max pools become MaxBlurPool2D; every weight is kept),
fine-tunes the rewritten model for as long and compares test accuracy and shift
consistency (circular shifts up to 8 pixels) with the original trained as long.
Writes a bar chart to `--out`. About three minutes on a 2-core CPU.

    python examples/antialias_your_model.py [--train-examples 20000] [--epochs 1]
"""

import argparse
import os

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import keras_shiftinv  # noqa: E402
from keras_shiftinv.app import data, metrics  # noqa: E402


def your_model():
    """Any functional or Sequential model; this one subsamples 8x in three ways."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            L.Rescaling(1 / 255),
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2, name="pool"),
            L.Conv2D(64, 3, strides=2, padding="same", use_bias=False, name="down"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(128, 3, strides=2, padding="same", activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(10, activation="softmax"),
        ],
        name="your_model",
    )


def fit(model, train, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train, epochs=epochs)


def scores(model, test):
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    consistency = metrics.shift_consistency(
        model, test, mode="circular", max_shift=8, samples=4
    )
    return accuracy, consistency


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-examples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="antialias_your_model.png")
    args = parser.parse_args()

    train, _ = data.load("fashion_mnist", f"train[:{args.train_examples}]")
    test, _ = data.load("fashion_mnist", "test[:2000]")
    train = data.pipeline(train, 128, training=True, pad_to=32, seed=0)
    test = data.pipeline(test, 256, training=False, pad_to=32)

    keras.utils.set_random_seed(0)
    model = your_model()
    fit(model, train, args.epochs)

    # The one call this example is about. It prints what it changed.
    antialiased = keras_shiftinv.antialias(model, verbose=True)
    results = {
        "original": scores(model, test),
        "antialiased, same weights": scores(antialiased, test),
    }
    fit(antialiased, train, args.epochs)
    results["antialiased, fine-tuned"] = scores(antialiased, test)
    fit(model, train, args.epochs)  # the same training time, for a fair comparison
    results["original, trained as long"] = scores(model, test)

    print(f"\n{'model':28s} {'accuracy':>9s} {'consistency':>12s}")
    for name, (accuracy, consistency) in results.items():
        print(f"{name:28s} {accuracy:9.4f} {consistency:12.4f}")

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    titles = ("test accuracy", "shift consistency (circular, < 8 px)")
    for index, (axis, title) in enumerate(zip(axes, titles, strict=True)):
        axis.bar(range(len(results)), [v[index] for v in results.values()])
        axis.set_xticks(range(len(results)), list(results), rotation=15, fontsize=8)
        axis.set_ylim(min(v[index] for v in results.values()) - 0.05, 1.0)
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"plot: {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
