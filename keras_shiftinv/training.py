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

A run killed at any point and started again with the same options continues from its
last finished epoch. Under MultiWorkerMirroredStrategy the chief writes the run folder
and every other worker writes the same files to `RUN_DIR/worker-<index>/`.
"""

import csv
import dataclasses
import inspect
import json
import math
import os
import re
import shutil
import time

import keras
import tensorflow as tf

from keras_shiftinv._keras_compat import multiworker_fit
from keras_shiftinv._paths import check_writable_dir
from keras_shiftinv.schedules import CyclicLR
from keras_shiftinv.validation import (
    standardize_choice,
    standardize_filt_size,
    standardize_int,
    standardize_number,
)

STRATEGIES = ("auto", "mirrored", "multiworker", "default")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cyclic", "cosine", "step", "constant")
AUGMENTS = ("none", "crop_flip")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
# Options a restart may change: they do not touch the training itself.
RESUMABLE_CHANGES = ("out", "verbose", "install_data")
# Images up to this size get the CIFAR stem (3x3 stride-1 conv, no max pooling).
SMALL_IMAGE_SIZE = 64


@dataclasses.dataclass
class TrainConfig:
    """Options of a training run; the defaults are the quick Fashion-MNIST run.

    Args:
        model: a name from `zoo.list_models()`.
        variant: a name from `zoo.VARIANTS`.
        dataset: "fashion_mnist", "mnist", "folder" (with `data_dir`) or a
            tensorflow-datasets name.
        data_dir: where the data set is (None: its default place).
        epochs: number of epochs.
        batch_size: global batch size (split over the replicas).
        optimizer: "sgd" (momentum 0.9) or "adam".
        lr: peak learning rate; None: 0.1 for SGD, 1e-3 for Adam.
        schedule: "cyclic" (one triangle: linear warm-up over the first
            `warmup_fraction` of the steps, then linear decay to 0), "cosine",
            "step" (divided by 10 at 50% and 75% of the steps) or "constant".
        warmup_fraction: where the cyclic schedule peaks, as a fraction of all steps.
        weight_decay: decoupled weight decay of the optimizer (Keras applies it to
            the weights directly, scaled by the learning rate).
        augment: "none" or "crop_flip" (random crop with padding, horizontal flip).
        width_multiplier, filt_size, padding, polyphase_order, placement,
            module_initializer: passed to the model (the last two for the
            "group"/"conv3d" variants).
        image_size: resize images to this size (needed when their sizes differ);
            28x28 images (Fashion-MNIST, MNIST) are zero-padded to 32x32 otherwise.
        mixed_precision: "float32", "mixed_float16" or "mixed_bfloat16".
        seed: random seed of weights, shuffling and augmentation.
        out: the run folder; None: `runs/<model>-<variant>-<dataset>`.
        strategy: "auto" (MirroredStrategy when more than one GPU is visible),
            "mirrored", "multiworker" (reads TF_CONFIG) or "default".
        validation_split: fraction of the training split held out for validation
            (best-model selection and the consistency callback); the test split is
            only used for the final summary.
        test_split: the split of the final evaluation ("validation" for data sets
            without a test split); not the training split nor a slice of it, which
            training and validation use whole.
        train_subset: use only this many training examples (None or 0: all).
        test_subset: evaluate on only this many test examples (None or 0: all).
        consistency_images: validation images the per-epoch consistency uses.
        consistency_samples: random shift pairs per image for consistency.
        max_shift: shifts are drawn from [0, max_shift) pixels per axis.
        install_data: on a machine without Fashion-MNIST, install Debian's
            dataset-fashion-mnist when allowed (root with apt-get).
        verbose: Keras verbosity of fit and evaluate (1: progress bars).
    """

    model: str = "resnet18"
    variant: str = "blur"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    schedule: str = "cyclic"
    warmup_fraction: float = 0.25
    weight_decay: float = 5e-5
    augment: str = "crop_flip"
    width_multiplier: float = 0.25
    filt_size: int = 4
    padding: str = "zero"
    polyphase_order: str = "fixed"
    placement: str = "replace"
    module_initializer: str | None = None
    image_size: int | None = None
    mixed_precision: str = "float32"
    seed: int = 0
    out: str | None = None
    strategy: str = "auto"
    validation_split: float = 0.1
    test_split: str = "test"
    train_subset: int | None = 12000
    test_subset: int | None = None
    consistency_images: int = 1000
    consistency_samples: int = 1
    max_shift: int = 8
    install_data: bool = True
    verbose: int = 1

    def __post_init__(self):
        standardize_choice(self.optimizer, "optimizer", OPTIMIZERS)
        standardize_choice(self.schedule, "schedule", SCHEDULES)
        standardize_choice(self.augment, "augment", AUGMENTS)
        standardize_choice(self.mixed_precision, "mixed_precision", PRECISIONS)
        standardize_choice(self.strategy, "strategy", STRATEGIES)
        for name in (
            "epochs",
            "batch_size",
            "consistency_images",
            "consistency_samples",
            "max_shift",
        ):
            standardize_int(getattr(self, name), name)
        standardize_filt_size(self.filt_size)
        standardize_int(self.seed, "seed", minimum=0)
        for name in ("train_subset", "test_subset"):
            # 0 means "all", like None.
            if getattr(self, name) is not None:
                standardize_int(getattr(self, name), name, minimum=0)
                setattr(self, name, getattr(self, name) or None)
        if self.image_size is not None:
            standardize_int(self.image_size, "image_size")
        standardize_number(self.validation_split, "validation_split", 0, 1)
        standardize_number(self.warmup_fraction, "warmup_fraction", 0, 1)
        standardize_number(self.weight_decay, "weight_decay", 0, closed=True)
        standardize_number(self.width_multiplier, "width_multiplier", 0)
        if self.lr is not None:
            standardize_number(self.lr, "lr", 0)
        if str(self.test_split).split("[")[0] == "train":
            raise ValueError(
                "The test split may not be the training split, which training and "
                f"validation use whole. Received: --test-split {self.test_split}; "
                "use 'test' or 'validation' (an image folder without split folders "
                "has both)."
            )
        if self.dataset == "folder" and not self.data_dir:
            raise ValueError(
                "`dataset='folder'` needs `data_dir`, a folder with "
                "one sub-folder of images per class."
            )

    @property
    def peak_lr(self):
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def run_dir(self):
        dataset = re.sub(r"[^\w.-]", "_", self.dataset)  # "tfds:x/y" -> "tfds_x_y"
        return self.out or os.path.join(
            "runs", f"{self.model}-{self.variant}-{dataset}"
        )


INITIAL_WEIGHTS = "initial.weights.h5"


def make_schedule(name, lr, total_steps, warmup_fraction=0.25):
    """The learning-rate schedule `name` over `total_steps` steps, peaking at `lr`."""
    standardize_choice(name, "schedule", SCHEDULES)
    if name == "cyclic":
        warmup = min(round(warmup_fraction * total_steps), total_steps - 1)
        return CyclicLR(lr, total_steps, warmup)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, total_steps)
    if name == "step":
        boundaries = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr, lr / 10, lr / 100]
        )
    return lr


def make_optimizer(name, learning_rate, weight_decay):
    """SGD with momentum 0.9 (the papers' choice) or Adam, with weight decay."""
    standardize_choice(name, "optimizer", OPTIMIZERS)
    if name == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, weight_decay=weight_decay or None
        )
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)


def make_strategy(name):
    """The `tf.distribute` strategy for `--strategy name`.

    "mirrored" uses every visible GPU, or every logical CPU device when there is no
    GPU. "multiworker" needs the TF_CONFIG environment variable describing the cluster
    and this process' task, and must be created before any other TensorFlow op.
    """
    standardize_choice(name, "strategy", STRATEGIES)
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}) on every worker.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    # Listing logical devices starts the TensorFlow runtime: only now is it allowed.
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _batch_norm_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif hasattr(layer, "layers"):
            yield from _batch_norm_layers(layer)


def synchronize_batch_norm(model, synchronized=True):
    """Sets `synchronized` on every BatchNormalization layer of `model`.

    Over several replicas, synchronized batch norm normalises with the statistics of
    the global batch, so every replica keeps the same moving statistics (and the same
    weights) as one device would. The flag only works on TensorFlow, so it is cleared
    again before a model is saved for good.
    """
    for layer in _batch_norm_layers(model):
        layer.synchronized = synchronized


def worker_dir(run_dir, strategy):
    """Where this process writes: the run folder for the chief (and single-process
    runs), `run_dir/worker-<index>` for the other workers of a multi-worker run."""
    if strategy.extended.should_checkpoint:
        return run_dir
    return os.path.join(run_dir, f"worker-{strategy.cluster_resolver.task_id}")


def read_log(path):
    """The rows of a run's log.csv as a list of dicts (empty if there is none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class EpochCSVLogger(keras.callbacks.Callback):
    """Writes one CSV row per finished epoch, keyed by the epoch number.

    Unlike `keras.callbacks.CSVLogger(append=True)`, a restarted run first drops the
    rows of the epochs it is about to redo (those finished after the last backup), so
    the log holds every epoch exactly once. Each row is flushed to disk when written.

    Args:
        path: the CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch:
            return
        self._first_epoch = False
        rows = read_log(self.path)
        kept = [row for row in rows if int(row["epoch"]) < epoch]
        if len(kept) < len(rows):
            self._write(kept, list(rows[0]), mode="w")

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **(logs or {})}
        row["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        rows = read_log(self.path)
        fields = list(rows[0]) if rows else ["epoch", *sorted(set(row) - {"epoch"})]
        self._write([row], fields, mode="a", header=not rows)

    def _write(self, rows, fields, mode, header=True):
        tmp = self.path + ".tmp" if mode == "w" else self.path
        with open(tmp, mode, newline="") as f:
            writer = csv.DictWriter(f, fields, restval="", extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        if tmp != self.path:
            os.replace(tmp, self.path)


def plot_log(rows, path):
    """Loss, accuracy and shift consistency per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) + 1 for row in rows]
    panels = [
        ("loss", ["loss", "val_loss"]),
        ("accuracy", ["accuracy", "val_accuracy"]),
        ("shift consistency", ["val_consistency"]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            if rows and rows[0].get(key, "") != "":
                ax.plot(epochs, [float(row[key]) for row in rows], "o-", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _shardable(ds):
    # In-memory and generator data sets have no files to shard by: split by element.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options)


def make_datasets(config):
    """(train, validation, test, info, input_shape, train_examples) for `config`:
    batched float32 images with raw pixel values and int64 labels."""
    from keras_shiftinv import data

    if config.dataset == "fashion_mnist":
        data.ensure_fashion_mnist(config.data_dir, install=config.install_data)
    # Folders of differently sized images are resized as they are read.
    resize = {"image_size": config.image_size} if config.dataset == "folder" else {}
    train_full, info = data.load(config.dataset, "train", config.data_dir, **resize)
    test_full, test_info = data.load(
        config.dataset, config.test_split, config.data_dir, **resize
    )
    height, width, channels = info.image_shape
    if config.image_size is None and (height is None or width is None):
        raise ValueError(
            f"the images of {config.dataset!r} differ in size: give image_size "
            "(--image-size) to resize them."
        )
    # 28x28 (MNIST-like) images are padded to 32x32, which the CIFAR stem halves
    # down to 4x4 without odd sizes.
    pad_to = 32 if config.image_size is None and (height, width) == (28, 28) else None
    size = config.image_size or pad_to
    input_shape = (size or height, size or width, channels)

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
            image_size=None if config.dataset == "folder" else config.image_size,
            pad_to=pad_to,
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
    return train, val, test, info, input_shape, n_train


def build_model(config, input_shape, num_classes):
    """The zoo model behind a Rescaling layer: raw pixels [0, 255] in, probabilities
    out, so the saved model needs no preprocessing from its caller."""
    import zoo

    standardize_choice(config.model, "model", zoo.list_models())
    standardize_choice(config.variant, "variant", zoo.VARIANTS)
    options = {
        "variant": config.variant,
        "num_classes": num_classes,
        "input_shape": input_shape,
        "width_multiplier": config.width_multiplier,
        "filt_size": config.filt_size,
        "padding": config.padding,
        "polyphase_order": config.polyphase_order,
    }
    # Only where they apply, so the other variants' options stay as they were.
    if config.variant in ("group", "conv3d"):
        options["placement"] = config.placement
        options["module_initializer"] = config.module_initializer
    if "stem" in inspect.signature(getattr(zoo, config.model)).parameters:
        small = max(input_shape[:2]) <= SMALL_IMAGE_SIZE
        options["stem"] = "cifar" if small else "imagenet"
    network = zoo.create_model(config.model, **options)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    return keras.Model(inputs, network(x), name=f"{config.model}_{config.variant}")


def _check_run_dir(run_dir, config_dict):
    """A run folder holds one run: refuse to continue one made with other options."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        previous = json.load(f)["options"]
    # Options added since the folder was written had their default then.
    for field in dataclasses.fields(TrainConfig):
        previous.setdefault(field.name, field.default)
    changed = sorted(
        key
        for key in config_dict
        if key not in RESUMABLE_CHANGES and previous.get(key) != config_dict[key]
    )
    if changed:
        diffs = ", ".join(
            f"{k}: {previous.get(k)!r} -> {config_dict[k]!r}" for k in changed
        )
        raise ValueError(
            f"{run_dir} holds a run made with other options ({diffs}); continue it "
            "with the same options, or give another --out (or --overwrite)."
        )


# What `train` writes in a run folder (and the temporary files it renames into
# place): `--overwrite` deletes these and nothing else.
RUN_ENTRIES = (
    "config.json",
    "log.csv",
    "best.keras",
    "final.keras",
    "tensorboard",
    "curves.png",
    "summary.json",
    "backup",
    INITIAL_WEIGHTS,
)


def is_run_folder(path):
    """Whether the folder `path` holds a run of `train`: its config.json as `train`
    writes it."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(config, dict)
        and isinstance(config.get("options"), dict)
        and "input_shape" in config
    )


def _is_worker_dir(entry):
    return entry.is_dir() and entry.name.startswith("worker-")


def _prepare_run_dir(run_dir, overwrite):
    """Checks, before any data is read, that `run_dir` may receive this run.

    It must be writable, and new, empty or a run folder of `train`: a folder of
    anything else is refused, with `overwrite` too, so that no user file is ever
    written into or deleted. The folders of other workers (`worker-<index>`) and a
    config.json being written do not count. With `overwrite`, a run folder loses
    the files `train` wrote (`RUN_ENTRIES`); other files stay.
    """
    check_writable_dir(run_dir, "--out")
    if not os.path.isdir(run_dir):
        return
    if is_run_folder(run_dir):
        if overwrite:
            _clear(run_dir)
        return
    foreign = sorted(
        entry.name
        for entry in os.scandir(run_dir)
        if not _is_worker_dir(entry) and entry.name != "config.json.tmp"
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"--out {run_dir!r} is not empty ({shown}) and is not a run folder of "
            "`train` (it has no config.json of a run), so it is left as it is"
            f"{', --overwrite included' if overwrite else ''}: give a new or empty "
            "folder to --out."
        )


def _clear(run_dir):
    """Deletes what `train` wrote in a run folder, but not the folders of other
    workers (which they clear themselves, maybe at this very moment)."""
    for name in RUN_ENTRIES:
        for path in (os.path.join(run_dir, name), os.path.join(run_dir, name + ".tmp")):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)


def _write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def summary_line(summary):
    return (
        f"{summary['model']} on {summary['dataset']}: "
        f"test accuracy {summary['test_accuracy']:.4f}, "
        f"shift consistency {summary['test_consistency']:.4f} "
        f"({summary['consistency_mode']} shifts < {summary['max_shift']} px), "
        f"best epoch {summary['best_epoch']}/{summary['epochs']} "
        f"-> {summary['best_model']}"
    )


def train(config, overwrite=False):
    """Trains, evaluates and writes the run folder; returns the summary dict.

    Args:
        config: a `TrainConfig` or a dict of its fields.
        overwrite: delete the files of the run in the run folder first; otherwise
            an unfinished run in it is continued and a finished one is left alone
            (its summary is returned). A folder that is not empty and holds no run
            of `train` is refused either way (a `ValueError`): nothing is deleted.
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
    options = dataclasses.asdict(config)
    _prepare_run_dir(run_dir, overwrite)
    summary_path = os.path.join(run_dir, "summary.json")
    _check_run_dir(run_dir, options)
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        print(f"{run_dir} holds a finished run (give --overwrite to train again):")
        print(summary_line(summary))
        return summary

    keras.utils.set_random_seed(config.seed)
    train_ds, val_ds, test_ds, info, input_shape, n_train = make_datasets(config)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    os.makedirs(run_dir, exist_ok=True)
    _write_json(
        os.path.join(run_dir, "config.json"),
        {
            "options": options,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names or []),
            "input_shape": list(input_shape),
            "train_examples": n_train,
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
            model = build_model(config, input_shape, info.num_classes)
            # What `diagnostics.downsampling_report` measures the change from; a
            # resumed run keeps the weights of its first start.
            initial_path = os.path.join(run_dir, INITIAL_WEIGHTS)
            if not os.path.exists(initial_path):
                model.save_weights(initial_path)
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
            fit_seconds = _fit(config, model, train_ds, val_ds, run_dir)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    summary = _evaluate(config, run_dir, test_ds, fit_seconds)
    _write_json(summary_path, summary)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    print(summary_line(summary))
    return summary


def _fit(config, model, train_ds, val_ds, run_dir):
    from keras_shiftinv.callbacks import ShiftConsistency

    log_path = os.path.join(run_dir, "log.csv")
    finished = read_log(log_path)
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
        EpochCSVLogger(log_path),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "best.keras"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        # Last: an epoch is backed up only once every logger has written it, so a
        # kill in between makes the restart redo (and re-log) that epoch.
        keras.callbacks.BackupAndRestore(
            os.path.join(run_dir, "backup"),
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
    model.save(os.path.join(run_dir, "final.keras"))
    return seconds


def _evaluate(config, run_dir, test_ds, fit_seconds):
    from keras_shiftinv import metrics

    rows = read_log(os.path.join(run_dir, "log.csv"))
    plot_log(rows, os.path.join(run_dir, "curves.png"))
    best_row = max(rows, key=lambda row: float(row["val_accuracy"]))
    best_path = os.path.join(run_dir, "best.keras")
    model = keras.saving.load_model(best_path)
    if any(layer.synchronized for layer in _batch_norm_layers(model)):
        synchronize_batch_norm(model, False)
        model.save(best_path)
    results = model.evaluate(test_ds, verbose=config.verbose, return_dict=True)
    consistency = metrics.shift_consistency(
        model,
        test_ds,
        mode="circular",
        max_shift=config.max_shift,
        samples=config.consistency_samples,
        seed=config.seed,
    )
    return {
        "model": f"{config.model}-{config.variant}",
        "dataset": config.dataset,
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "test_consistency": float(consistency),
        "consistency_mode": "circular",
        "max_shift": config.max_shift,
        "best_epoch": int(best_row["epoch"]) + 1,
        "best_val_accuracy": float(best_row["val_accuracy"]),
        "epochs": config.epochs,
        "best_model": best_path,
        "fit_seconds_last_session": round(fit_seconds, 1),
        "parameters": int(model.count_params()),
    }
