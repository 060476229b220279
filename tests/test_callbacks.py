import csv
import glob
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_shiftinv.app.callbacks import ShiftConsistency  # noqa: E402
from tests.shift_reference import grid, predictions  # noqa: E402

pytestmark = pytest.mark.tf_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 8, 8, 1)).astype("float32")
    return x, rng.integers(0, 3, n)


def _model(invariant):
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Rescaling(1 / 255)(inputs)
    if invariant:
        hidden = keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2D(4, 1, activation="relu")(hidden)
        )
    else:
        hidden = keras.layers.Flatten()(
            keras.layers.Conv2D(4, 3, strides=2, activation="relu")(hidden)
        )
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _event_tags(folder):
    tags = set()
    for path in glob.glob(os.path.join(folder, "**", "events.*"), recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_logs_reach_history_csv_and_tensorboard(tmp_path):
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    callbacks = [
        ShiftConsistency(ds, max_shift=4, samples=2),
        ShiftConsistency(
            ds, mode="crop", max_shift=3, samples="all", name="crop_consistency"
        ),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
    ]
    model = _model(invariant=True)
    history = model.fit(ds, epochs=2, verbose=0, callbacks=callbacks)
    assert history.history["val_consistency"] == [1.0, 1.0]
    crop_values = history.history["crop_consistency"]
    # The last epoch's value is that of the model as fit left it.
    classes = predictions(model, x, grid(len(x), 3), mode="crop").argmax(-1)
    agree = (classes[:, :, None] == classes[:, None, :]).mean()
    assert crop_values[-1] == pytest.approx(agree, abs=1e-12)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_consistency"]) for r in rows] == [1.0, 1.0]
    assert [float(r["crop_consistency"]) for r in rows] == crop_values
    # TensorBoard writes val_* keys to its validation run without the prefix.
    assert "epoch_consistency" in _event_tags(str(tmp_path / "tb" / "validation"))


def test_value_is_the_metric_of_the_epochs_model():
    x, y = _data()
    model = _model(invariant=False)
    callback = ShiftConsistency((x, y), max_shift=4, samples=3, seed=5, max_batches=2)
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    from keras_shiftinv.app import metrics

    expected = metrics.shift_consistency(
        model, (x, y), max_shift=4, samples=3, seed=5, max_batches=2
    )
    assert history.history["val_consistency"] == [expected]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"mode": "roll"}, "mode"),
        ({"max_shift": 0}, "max_shift"),
        ({"samples": "some"}, "samples"),
        ({"pad_mode": "edge"}, "pad_mode"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        ShiftConsistency(_data(), **kwargs)


MIRRORED = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_shiftinv.app import metrics
    from keras_shiftinv.app.callbacks import ShiftConsistency

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (36, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 36)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Rescaling(1 / 255)(inputs)
        h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(h)
        outputs = keras.layers.Dense(3, activation="softmax")(
            keras.layers.Flatten()(h))
        model = keras.Model(inputs, outputs)
        model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(ds, epochs=2, verbose=0,
                        callbacks=[ShiftConsistency(ds, max_shift=4, samples=2)])
    logged = history.history["val_consistency"][-1]
    # The same weights outside the strategy give the same number.
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    assert strategy.num_replicas_in_sync == 2
    assert logged == metrics.shift_consistency(plain, ds, max_shift=4, samples=2)
    assert 0 < logged < 1
    print("OK", history.history["val_consistency"])
    """
)


def test_callback_under_mirrored_strategy():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-c", MIRRORED],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK" in run.stdout
