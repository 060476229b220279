import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")
if keras.backend.backend() != "tensorflow":
    pytest.skip("training needs the TensorFlow backend", allow_module_level=True)

import keras_shiftinv  # noqa: E402, F401  (registers the package's classes)
from keras_shiftinv import schedules  # noqa: E402
from keras_shiftinv.app import callbacks, distribute, run_folder, training  # noqa: E402
from keras_shiftinv.schedules import CyclicLR  # noqa: E402
from tests.training_helpers import (  # noqa: E402
    REPO,
    cli_command,
    free_ports,
    run_cli,
    subprocess_env,
    tiny_args,
    write_image_folder,
)

pytestmark = pytest.mark.tf_only


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cyclic_lr_is_one_triangle():
    schedule = CyclicLR(peak_lr=0.4, total_steps=10, warmup_steps=3)
    rates = [_lr(schedule, step) for step in range(12)]
    # Rises linearly to the peak after `warmup_steps` steps...
    np.testing.assert_allclose(rates[:4], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    # ...then falls linearly to 0 at `total_steps` and stays there.
    np.testing.assert_allclose(np.diff(rates[3:10]), -0.4 / 7, rtol=1e-5)
    assert rates[9] > 0 and rates[10] == 0 and rates[11] == 0


def test_cyclic_lr_round_trips_and_reloads_in_an_optimizer(tmp_path):
    schedule = CyclicLR(peak_lr=0.5, total_steps=20, warmup_steps=5)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, CyclicLR)
    assert restored.get_config() == schedule.get_config()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), "mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=2, batch_size=2, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    # 4 steps done: the reloaded optimizer continues the schedule where it was.
    assert int(loaded.optimizer.iterations.numpy()) == 4
    assert float(loaded.optimizer.learning_rate.numpy()) == pytest.approx(
        _lr(schedule, 4)
    )


@pytest.mark.parametrize(
    "bad, name",
    [((0, 10, 0), "peak_lr"), ((0.1, 10, 10), "warmup_steps"), ((0.1, 0, 0), "total")],
)
def test_cyclic_lr_bad_arguments(bad, name):
    with pytest.raises(ValueError, match=name):
        CyclicLR(*bad)


def test_step_and_cosine_schedules():
    step = schedules.make_schedule("step", 1.0, 100)
    assert [_lr(step, s) for s in (0, 49, 51, 74, 76, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    cosine = schedules.make_schedule("cosine", 1.0, 100)
    assert _lr(cosine, 0) == pytest.approx(1.0)
    assert _lr(cosine, 50) == pytest.approx(0.5, abs=1e-6)
    assert _lr(cosine, 100) == pytest.approx(0.0, abs=1e-6)
    assert schedules.make_schedule("constant", 0.3, 100) == 0.3
    cyclic = schedules.make_schedule("cyclic", 1.0, 100, warmup_fraction=0.2)
    assert (cyclic.total_steps, cyclic.warmup_steps) == (100, 20)


def test_optimizers():
    sgd = schedules.make_optimizer("sgd", 0.1, 5e-5)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert (sgd.momentum, sgd.weight_decay) == (0.9, 5e-5)
    adam = schedules.make_optimizer("adam", 1e-3, 0.0)
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -2}, "batch_size"),
        ({"schedule": "linear"}, "schedule"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"strategy": "tpu"}, "strategy"),
        ({"mixed_precision": "float16"}, "mixed_precision"),
        ({"lr": -0.1}, "lr"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"train_subset": -1}, "train_subset"),
        ({"dataset": "folder"}, "data_dir"),
    ],
)
def test_config_errors_name_the_option(kwargs, name):
    with pytest.raises(ValueError, match=name):
        training.TrainConfig(**kwargs)


def test_config_defaults():
    config = training.TrainConfig()
    assert config.run_dir == os.path.join("runs", "resnet18-blur-fashion_mnist")
    other = training.TrainConfig(dataset="tfds:imagenette/160px", out=None)
    assert other.run_dir == os.path.join("runs", "resnet18-blur-tfds_imagenette_160px")
    assert config.peak_lr == 0.1
    assert training.TrainConfig(optimizer="adam").peak_lr == 1e-3
    assert training.TrainConfig(train_subset=0).train_subset is None  # all


def test_strategies_on_one_cpu(monkeypatch):
    import tensorflow as tf

    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    # No GPU here: "auto" is the default strategy.
    assert distribute.make_strategy("auto") is tf.distribute.get_strategy()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")
    strategy = distribute.make_strategy("default")
    assert distribute.worker_dir("runs/x", strategy) == "runs/x"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_keeps_every_epoch_once(tmp_path):
    path = str(tmp_path / "log.csv")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.25), "mse")

    def session(first_epoch, last_epoch):
        logger = callbacks.EpochCSVLogger(path)
        logger.set_model(model)
        for epoch in range(first_epoch, last_epoch):
            logger.on_epoch_begin(epoch)
            logger.on_epoch_end(epoch, {"loss": 10.0 + epoch + first_epoch / 10})

    session(0, 3)
    # A restart that redoes epoch 2 (its row was written, its backup was not)
    # replaces the row instead of adding a second one.
    session(2, 4)
    rows = _rows(path)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["loss"]) for r in rows] == [10.0, 11.0, 12.2, 13.2]
    assert {float(r["learning_rate"]) for r in rows} == {0.25}


def test_datasets_pad_28_to_32_and_split(tmp_path):
    data_dir = write_image_folder(tmp_path, size=28, train_per_class=4)
    config = training.TrainConfig(
        dataset="folder", data_dir=data_dir, batch_size=4, validation_split=0.25
    )
    datasets = training.make_datasets(config)
    assert datasets.input_shape == (32, 32, 1) and datasets.info.num_classes == 3
    assert datasets.input_fit == {"pad_to": (32, 32)}
    assert datasets.train_examples == 9
    splits = (datasets.train, datasets.validation, datasets.test)
    sizes = [sum(int(x.shape[0]) for x, _ in ds) for ds in splits]
    assert sizes == [9, 3, 6]
    x, _ = next(iter(datasets.train))
    assert x.dtype == "float32" and float(np.max(x)) > 1.0  # raw pixel values


def _equal_weights(path_a, path_b):
    a = keras.saving.load_model(path_a).get_weights()
    b = keras.saving.load_model(path_b).get_weights()
    assert len(a) == len(b)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
from keras_shiftinv.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_fit_under_mirrored_strategy_on_two_logical_cpus(image_folder, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(image_folder, out, 1, "--strategy", "mirrored")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "config.json") as f:
        config = json.load(f)
    assert config["strategy"] == "MirroredStrategy" and config["replicas"] == 2
    assert (out / "best.keras").exists() and (out / "summary.json").exists()
    # Synchronized batch norm is a TensorFlow-only flag: not in the saved models.
    model = keras.saving.load_model(out / "final.keras")
    assert not any(layer.synchronized for layer in distribute.batch_norm_layers(model))


def test_multiworker_strategy_two_workers_end_equal(image_folder, tmp_path):
    out = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = tiny_args(image_folder, out, 2, "--strategy", "multiworker")
    procs = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        procs.append(
            subprocess.Popen(
                cli_command(args),
                env=subprocess_env(TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    # The chief writes the run folder, the other worker its own sub-folder.
    chief, worker = out, out / "worker-1"
    for folder in (chief, worker):
        with open(folder / "config.json") as f:
            config = json.load(f)
        assert config["replicas"] == 2
        assert config["options"]["strategy"] == "multiworker"
        assert [r["epoch"] for r in _rows(folder / "log.csv")] == ["0", "1"]
    _equal_weights(chief / "final.keras", worker / "final.keras")
    # Both saw the same (all-reduced) training metrics.
    assert _rows(chief / "log.csv")[-1]["loss"] == _rows(worker / "log.csv")[-1]["loss"]


def test_resume_after_sigkill_continues_and_logs_every_epoch_once(tmp_path):
    data_dir = write_image_folder(tmp_path / "data", train_per_class=16)
    out = tmp_path / "run"
    epochs = 4
    args = tiny_args(data_dir, out, epochs)
    log = out / "log.csv"
    proc = subprocess.Popen(
        cli_command(args),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and len(_rows(log)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stderr.close()
    before = _rows(log)
    assert 2 <= len(before) < epochs

    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    after = _rows(log)
    assert [int(r["epoch"]) for r in after] == list(range(epochs))
    first = next(
        line for line in result.stdout.splitlines() if line.startswith("Epoch ")
    )
    restarted_at = int(first.split()[1].split("/")[0])
    # Continued after the last backed-up epoch (the last logged one, or the one
    # before if the kill fell between logging and backing it up)...
    assert len(before) <= restarted_at <= len(before) + 1, first
    # ...and the finished epochs were not trained again.
    assert after[: restarted_at - 1] == before[: restarted_at - 1]
    assert (out / "summary.json").exists() and not (out / "backup").exists()


def test_restart_after_the_last_epoch_only_evaluates(
    image_folder, tmp_path, monkeypatch, capsys
):
    from keras_shiftinv.app import cli

    args = tiny_args(image_folder, tmp_path / "run", 1)
    out = tmp_path / "run"
    evaluate = training._evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_evaluate", killed)
    assert cli.main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert (out / "backup").exists() and not (out / "summary.json").exists()
    log = _rows(out / "log.csv")
    initial = (out / run_folder.INITIAL_WEIGHTS).read_bytes()

    monkeypatch.setattr(training, "_evaluate", evaluate)
    assert cli.main(args) == 0
    assert "Epoch 1/1" not in capsys.readouterr().out  # nothing trained again
    assert _rows(out / "log.csv") == log
    assert (out / "summary.json").exists() and not (out / "backup").exists()
    # The weights before training, kept from the first start: they load into the
    # model and differ from the trained ones.
    assert (out / run_folder.INITIAL_WEIGHTS).read_bytes() == initial
    trained = keras.saving.load_model(out / "final.keras")
    start = keras.models.clone_model(trained)
    start.load_weights(out / run_folder.INITIAL_WEIGHTS)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(trained.get_weights(), start.get_weights(), strict=True)
    )


def test_train_without_the_test_split_measures_nothing_there(
    image_folder, tmp_path, monkeypatch, capsys
):
    from keras_shiftinv.app import cli, evaluate

    args = tiny_args(image_folder, tmp_path / "run", 1)
    train = training.train

    def not_called(*args, **kwargs):
        raise AssertionError("measured the test split")

    monkeypatch.setattr(
        training, "train", lambda config, overwrite: train(config, overwrite, False)
    )
    monkeypatch.setattr(evaluate, "measure", not_called)
    assert cli.main(args) == 0
    with open(tmp_path / "run" / "summary.json") as f:
        summary = json.load(f)
    assert [summary[k] for k in ("test_accuracy", "test_loss", "test_consistency")] == [
        None
    ] * 3
    assert summary["parameters"] > 0 and summary["best_epoch"] == 1
    assert "not measured on the test split" in capsys.readouterr().out
