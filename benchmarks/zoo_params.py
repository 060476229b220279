"""Prints README's table of zoo models x variants with their parameter counts.

Trainable parameters (batch-norm moving statistics are not parameters, as in the
papers) with the default options: 224x224x3 inputs, 1000 classes, ImageNet stem, VGG
with batch normalization and the global-average-pooling head. The "+ aps order"
columns are "group"/"conv3d" with polyphase_order="aps", which also replace the strided
stem conv. With --fc, adds the VGGs without batch normalization and with the "fc"
head (the original networks; slow: 130M weights each).

    python benchmarks/zoo_params.py [--fc]
"""

import argparse

import zoo
from keras_shiftinv.variants import MODULE_VARIANTS

COLUMNS = [(v, {"variant": v}) for v in zoo.VARIANTS] + [
    (f"{v} + aps order", {"variant": v, "polyphase_order": "aps"})
    for v in MODULE_VARIANTS
]


def trainable_params(model):
    return sum(int(w.numpy().size) for w in model.trainable_weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fc", action="store_true", help="add the original VGGs")
    args = parser.parse_args()
    rows = [(name, name, {}) for name in zoo.list_models()]
    if args.fc:
        rows += [
            (f"{name} (no BN, fc head)", name, {"batch_norm": False, "head": "fc"})
            for name in zoo.list_models()
            if name.startswith("vgg")
        ]
    print("| model | " + " | ".join(title for title, _ in COLUMNS) + " |")
    print("| --- |" + " ---: |" * len(COLUMNS))
    for title, name, options in rows:
        counts = [
            trainable_params(zoo.create_model(name, **options, **variant))
            for _, variant in COLUMNS
        ]
        print(f"| {title} | " + " | ".join(f"{c:,}" for c in counts) + " |", flush=True)


if __name__ == "__main__":
    main()
