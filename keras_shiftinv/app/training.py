"""Train a zoo model with `model.fit` under `tf.distribute`, resumably.

`train(config)` is the `train` command: it builds the data pipelines, the model (raw
pixels in [0, 255], class probabilities out), the optimizer and learning-rate schedule,
fits with a shift-consistency callback, and writes the run folder:

    config.json     the options of the run (a restart must use the same ones)
    log.csv         one row per finished epoch (loss, accuracy, val_consistency, ...)
    best.keras      the model of the epoch with the best validation accuracy
    final.keras     the model after the last epoch
    tensorboard/    TensorBoard logs
    curves.png      loss, accuracy and consistency per epoch
    summary.json    test accuracy and shift consistency of best.keras
    initial.weights.h5  the weights before training (for the diagnostics)
    backup/         BackupAndRestore state while the run is unfinished
    best.weights.h5 the best epoch's weights while the run is unfinished

A run killed at any point and started again with the same options continues from its
last finished epoch. Under MultiWorkerMirroredStrategy the chief writes the run folder
and every other worker writes the same files to `RUN_DIR/worker-<index>/`.
"""

import dataclasses
import json
import math
import os
import shutil
import time
import typing

import keras
import tensorflow as tf

from keras_shiftinv._keras_compat import multiworker_fit
from keras_shiftinv.app import input_fit, plots, run_folder
from keras_shiftinv.app._files import FolderLock, atomic_path
from keras_shiftinv.app._paths import check_writable_dir
from keras_shiftinv.app.callbacks import EpochCSVLogger, read_log
from keras_shiftinv.app.distribute import (
    make_strategy,
    synchronize_batch_norm,
    worker_dir,
)
from keras_shiftinv.app.run_folder import RunFolder
from keras_shiftinv.app.train_config import TrainConfig
from keras_shiftinv.models import RecordedModel
from keras_shiftinv.schedules import make_optimizer, make_schedule

# Images up to this size get the CIFAR stem (3x3 stride-1 conv, no max pooling).
SMALL_IMAGE_SIZE = 64


def _shardable(ds):
    # In-memory and generator data sets have no files to shard by: split by element.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options)


class Datasets(typing.NamedTuple):
    """The data of a run: batched float32 images (raw pixel values) and int64
    labels, and what the model is built for."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    info: object  # keras_shiftinv.app.data.DatasetInfo
    input_shape: tuple
    train_examples: int
    input_fit: dict  # the pipeline options of keras_shiftinv.app.input_fit


def make_datasets(config):
    """The `Datasets` of a run of `config`."""

    from keras_shiftinv.app import data

    if config.dataset == "fashion_mnist":
        data.ensure_fashion_mnist(config.data_dir, install=config.install_data)
    # Folders of differently sized images are resized as they are read.
    resize = {"image_size": config.image_size} if config.dataset == "folder" else {}
    train_full, info = data.load(config.dataset, "train", config.data_dir, **resize)
    if resize:
        # The test images get the training images' channels, whatever theirs.
        resize["channels"] = info.image_shape[-1]
    test_full, test_info = data.load(
        config.dataset, config.test_split, config.data_dir, **resize
    )
    if test_info.image_shape != info.image_shape:
        raise ValueError(
            f"The {config.test_split!r} images of {config.dataset!r} are "
            f"{test_info.image_shape}, the training images {info.image_shape}: "
            "pass --image-size to resize them all to one size."
        )
    if info.num_classes < 2:
        raise ValueError(
            f"{config.dataset!r} has {info.num_classes} class "
            f"({', '.join(info.class_names)}): a classifier needs two or more "
            "(one sub-folder of images per class)."
        )
    fit = input_fit.fit_options(
        info.image_shape,
        image_size=config.image_size,
        images=f"the images of {config.dataset!r}",
    )
    input_shape = input_fit.fitted_shape(info.image_shape, fit)

    if info.num_examples is None:
        raise ValueError(
            f"the size of the training split of {config.dataset!r} is unknown, so "
            "it cannot be split for validation."
        )
    n_val = int(config.validation_split * info.num_examples)
    n_train = info.num_examples - n_val
    if config.train_subset is not None:
        n_train = min(n_train, config.train_subset)
    if n_train < 1 or n_val < 1:
        raise ValueError(
            f"{config.dataset!r} has {info.num_examples} training examples: too few "
            f"for validation_split={config.validation_split}."
        )

    def batches(ds, training):
        ds = data.pipeline(
            ds,
            config.batch_size,
            training=training,
            augment=config.augment,
            **fit,
            seed=config.seed,
        )
        return _shardable(ds)

    # Validation is the start of the training split (a fixed order for every
    # source), so it never depends on train_subset.
    val = batches(train_full.take(n_val), training=False)
    train = batches(train_full.skip(n_val).take(n_train), training=True)
    if config.test_subset is not None:
        test_full = test_full.take(config.test_subset)
    test = batches(test_full, training=False)
    return Datasets(train, val, test, info, input_shape, n_train, fit)


def build_model(config, input_shape, num_classes):
    """The zoo model behind a Rescaling layer: raw pixels [0, 255] in, probabilities
    out, so the saved model needs no preprocessing from its caller."""
    import zoo

    options = {
        "variant": config.variant,
        "num_classes": num_classes,
        "input_shape": input_shape,
        "width_multiplier": config.width_multiplier,
        "filt_size": config.filt_size,
        "pad_mode": config.padding,
        "polyphase_order": config.polyphase_order,
    }
    # Only where they apply, so the other variants' options stay as they were.
    options.update(config.policy.module_options())
    if zoo.model_spec(config.model).has_stem:
        small = max(input_shape[:2]) <= SMALL_IMAGE_SIZE
        options["stem"] = "cifar" if small else "imagenet"
    network = zoo.create_model(config.model, **options)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    return RecordedModel(
        inputs,
        network(x),
        name=f"{config.model}_{config.variant}",
        record={"input": {"pixels": [0, 255], "scale": 1.0 / 255.0}},
    )


def summary_line(summary):
    test = "not measured on the test split"
    if summary["test_accuracy"] is not None:
        test = (
            f"test accuracy {summary['test_accuracy']:.4f}, "
            f"shift consistency {summary['test_consistency']:.4f} "
            f"({summary['consistency_mode']} shifts < {summary['max_shift']} px)"
        )
    return (
        f"{summary['model']} on {summary['dataset']}: {test}, "
        f"best epoch {summary['best_epoch']}/{summary['epochs']} "
        f"-> {summary['best_model']}"
    )


def train(config, overwrite=False, test=True):
    """Trains, evaluates and writes the run folder; returns the summary dict.

    Args:
        config: a `TrainConfig` or a dict of its fields.
        overwrite: delete the files of the run in the run folder first; otherwise
            an unfinished run in it is continued and a finished one is left alone
            (its summary is returned). A folder that is not empty and holds no run
            of `train` is refused either way (a `ValueError`): nothing is deleted.
        test: measure the best model on the test split (accuracy, loss and
            consistency, in the summary); with False they are None, for a caller
            that measures the model itself (benchmarks/reproduce.py).
    """
    if isinstance(config, dict):
        config = TrainConfig(**config)
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "training needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"got {keras.backend.backend()!r}."
        )
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)
    run_dir = worker_dir(config.run_dir, strategy)
    check_writable_dir(run_dir, "--out")
    # One writer per run folder: a second train on it would log every epoch twice
    # and delete the first one's files.
    with FolderLock(run_dir, f"The run folder {run_dir!r}", "--out"):
        return _train(config, strategy, run_dir, overwrite, test)


def _train(config, strategy, run_dir, overwrite, test):
    options = dataclasses.asdict(config)
    run_folder.prepare(run_dir, overwrite)
    files = RunFolder(run_dir)
    run_folder.check_options(run_dir, options, TrainConfig)
    if os.path.exists(files.summary):
        with open(files.summary) as f:
            summary = json.load(f)
        print(f"{run_dir} holds a finished run (give --overwrite to train again):")
        print(summary_line(summary))
        return summary

    keras.utils.set_random_seed(config.seed)
    datasets = make_datasets(config)
    info = datasets.info
    steps_per_epoch = math.ceil(datasets.train_examples / config.batch_size)
    os.makedirs(run_dir, exist_ok=True)
    run_folder.write_json(
        files.config,
        {
            "options": options,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names or []),
            "input_shape": list(datasets.input_shape),
            "input_fit": input_fit.record(info.image_shape, datasets.input_fit),
            "train_examples": datasets.train_examples,
            "steps_per_epoch": steps_per_epoch,
            "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        },
    )

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        with strategy.scope():
            model = build_model(config, datasets.input_shape, info.num_classes)
            # What `diagnostics.downsampling_report` measures the change from; a
            # resumed run keeps the weights of its first start.
            if not os.path.exists(files.initial_weights):
                model.save_weights(files.initial_weights)
            synchronize_batch_norm(model, strategy.num_replicas_in_sync > 1)
            schedule = make_schedule(
                config.schedule,
                config.peak_lr,
                config.epochs * steps_per_epoch,
                config.warmup_fraction,
            )
            model.compile(
                optimizer=make_optimizer(
                    config.optimizer, schedule, config.weight_decay
                ),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
        with multiworker_fit(model):
            fit_seconds = _fit(
                config, model, datasets.train, datasets.validation, files
            )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    summary = _evaluate(
        config, files, datasets.test if test else None, fit_seconds, model
    )
    run_folder.write_json(files.summary, summary)
    shutil.rmtree(files.backup, ignore_errors=True)
    os.remove(files.best_weights)
    print(summary_line(summary))
    return summary


def _fit(config, model, train_ds, val_ds, files):
    from keras_shiftinv.app.callbacks import ShiftConsistency

    finished = read_log(files.log)
    best_so_far = max((float(row["val_accuracy"]) for row in finished), default=None)
    consistency_batches = math.ceil(config.consistency_images / config.batch_size)
    callbacks = [
        # Adds val_consistency to the logs, so it comes before every logger.
        ShiftConsistency(
            val_ds,
            mode="circular",
            max_shift=config.max_shift,
            samples=config.consistency_samples,
            seed=config.seed,
            max_batches=consistency_batches,
        ),
        EpochCSVLogger(files.log),
        # Weights only: best.keras is written once, after training, without the
        # synchronized batch norm of a distributed run.
        keras.callbacks.ModelCheckpoint(
            files.best_weights,
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.TensorBoard(files.tensorboard),
        # Last: an epoch is backed up only once every logger has written it, so a
        # kill in between makes the restart redo (and re-log) that epoch.
        keras.callbacks.BackupAndRestore(
            files.backup,
            double_checkpoint=True,
            delete_checkpoint=False,
        ),
    ]
    start = time.perf_counter()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        # The training pipeline shuffles (with the run's seed).
        shuffle=False,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    seconds = time.perf_counter() - start
    synchronize_batch_norm(model, False)
    with atomic_path(files.final_model) as path:
        model.save(path)
    model.load_weights(files.best_weights)
    with atomic_path(files.best_model) as path:
        model.save(path)
    return seconds


def _evaluate(config, files, test_ds, fit_seconds, model):
    from keras_shiftinv.app.evaluate import measure

    rows = read_log(files.log)
    plots.plot_training_curves(rows, files.curves)
    best_row = max(rows, key=lambda row: float(row["val_accuracy"]))
    best_path = files.best_model
    results = dict.fromkeys(("accuracy", "loss", "consistency"))
    if test_ds is not None:
        # Measured on the saved file, as a user of the run folder gets it.
        results = measure(
            keras.saving.load_model(best_path),
            test_ds,
            names=tuple(results),
            shift="circular",
            max_shift=config.max_shift,
            samples=config.consistency_samples,
            seed=config.seed,
            verbose=config.verbose,
        )
        results = {name: float(value) for name, value in results.items()}
    return {
        "model": f"{config.model}-{config.variant}",
        "dataset": config.dataset,
        "test_accuracy": results["accuracy"],
        "test_loss": results["loss"],
        "test_consistency": results["consistency"],
        "consistency_mode": "circular",
        "max_shift": config.max_shift,
        "best_epoch": int(best_row["epoch"]) + 1,
        "best_val_accuracy": float(best_row["val_accuracy"]),
        "epochs": config.epochs,
        "best_model": best_path,
        "fit_seconds_last_session": round(fit_seconds, 1),
        "parameters": int(model.count_params()),
    }
