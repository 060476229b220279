"""The tiny classifier of the export and predict tests: 12x12x3 uint8 pixels in,
probabilities of 3 classes out."""

import keras
import numpy as np

from keras_shiftinv import BlurPool2D, MaxBlurPool2D

SHAPE = (12, 12, 3)
CLASSES = 3


def tiny_model(activation="softmax"):
    """Raw pixels in [0, 255] -> classes, built as the train command builds its
    models: a Rescaling layer, then a network (a nested functional model) with both
    custom pooling layers, logits and a float32 output activation."""
    keras.utils.set_random_seed(0)
    image = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = MaxBlurPool2D(filt_size=3)(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = BlurPool2D(filt_size=4)(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(CLASSES, name="logits")
    outputs = keras.layers.Activation(activation, dtype="float32")(dense(features))
    network = keras.Model(image, outputs, name="network")
    # Logits of the centred features, scaled up: the predicted class then varies
    # between images (with the random initial weights it is the same for all).
    f = keras.Model(image, features).predict(images(16, 99) / 255, verbose=0)
    kernel = np.random.default_rng(0).standard_normal((f.shape[1], CLASSES))
    kernel *= 10 / f.std()
    dense.set_weights([kernel, -f.mean(0) @ kernel])
    inputs = keras.Input(SHAPE)
    return keras.Model(inputs, network(keras.layers.Rescaling(1 / 255)(inputs)))


def images(batch, seed):
    rng = np.random.default_rng(seed)
    colour = rng.integers(1, 256, (batch, 1, 1, SHAPE[-1]))
    return (rng.random((batch, *SHAPE)) * colour).astype(np.uint8)
