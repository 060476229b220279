"""The zoo models the deployment tests build (tests/test_deploy.py, the XLA and
JAX tests of tests/zoo/test_compiled.py), and TensorFlow's numbers without XLA for
the JAX run: `python -m tests.zoo.cases OUT.npz NAME...` (on TensorFlow)."""

import functools
import sys

import keras
import numpy as np

import zoo
from keras_shiftinv.convert import antialias
from tests.zoo.utils import NUM_CLASSES, images, small_model


def _zoo_cases():
    """{name: (builder, exactly invariant)}: every variant with zero and circular
    padding, the blur at its default padding, the aps polyphase order of the
    learned modules, the torchvision-flavor blur network and an `antialias()`
    output."""
    cases = {}
    for variant in zoo.VARIANTS:
        for mode in ("zero", "circular"):
            cases[f"{variant}-{mode}"] = (
                functools.partial(small_model, "resnet18", variant, pad_mode=mode),
                variant == "aps" and mode == "circular",
            )
    cases["blur"] = (functools.partial(small_model, "resnet18", "blur"), False)
    for variant in ("group", "conv3d"):
        cases[f"{variant}-aps-circular"] = (
            functools.partial(
                small_model,
                "resnet18",
                variant,
                pad_mode="circular",
                polyphase_order="aps",
            ),
            True,
        )
    cases["torchvision-blur"] = (_torchvision_blur, False)
    cases["antialias"] = (_antialiased, False)
    return cases


def _torchvision_blur(classifier_activation=None):
    keras.utils.set_random_seed(0)
    return zoo.create_model(
        "resnet18",
        variant="blur",
        filt_size=3,
        flavor="torchvision",
        width_multiplier=1 / 16,
        num_classes=NUM_CLASSES,
        input_shape=(64, 64, 3),
        classifier_activation=classifier_activation,
    )


def _antialiased(classifier_activation=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation=classifier_activation)(x)
    return antialias(keras.Model(inputs, outputs))


ZOO_CASES = _zoo_cases()


@functools.cache
def zoo_model(name):
    """The model of case `name`, logits out (built once per process)."""
    return ZOO_CASES[name][0](classifier_activation=None)


def fit_and_predict(model, jit_compile):
    """`model`'s logits on 4 fixed images, then its weights and logits after one
    SGD step on them (`jit_compile` as for `Model.compile`)."""
    x = images(4, model.inputs[0].shape[1], seed=2)
    y = np.arange(4) % NUM_CLASSES
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    before = model.predict(x, verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return before, model.get_weights(), model.predict(x, verbose=0)


def main(path, *names):
    arrays = {}
    for name in names:
        model = ZOO_CASES[name][0](classifier_activation=None)
        for i, w in enumerate(model.get_weights()):
            arrays[f"{name}:init:{i}"] = w
        before, weights, after = fit_and_predict(model, jit_compile=False)
        arrays[f"{name}:before"], arrays[f"{name}:after"] = before, after
        for i, w in enumerate(weights):
            arrays[f"{name}:fit:{i}"] = w
    np.savez(path, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
