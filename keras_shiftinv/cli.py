"""The command line: `python -m keras_shiftinv COMMAND [options]` (or `keras-shiftinv`).

Each command is a pair of functions: `add_<command>_parser(subparsers)` declares its
options and sets `run=<function(args)>`; `COMMANDS` lists the `add_` functions.
Errors the user can fix (bad options, missing data) are ValueErrors: `main` prints
them as one `error: ...` line and exits with status 2, without a traceback.
"""

import argparse
import dataclasses
import sys

from keras_shiftinv import training

TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(training.TrainConfig)}


def _train_option(group, flag, help, **kwargs):
    name = flag.lstrip("-").replace("-", "_")
    default = TRAIN_DEFAULTS[name]
    group.add_argument(flag, dest=name, default=default, help=help, **kwargs)


def add_train_parser(subparsers):
    import zoo

    parser = subparsers.add_parser(
        "train",
        help="train a zoo model (with no options: a quick Fashion-MNIST run)",
        description=(
            "Train a zoo model with model.fit and report its test accuracy and shift "
            "consistency. Writes config.json, log.csv, best.keras, final.keras, "
            "tensorboard/, curves.png and summary.json to the run folder. A run "
            "stopped at any point continues from its last finished epoch when the "
            "same command is run again."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = parser.add_argument_group("model")
    _train_option(model, "--model", "zoo model", choices=zoo.list_models())
    _train_option(model, "--variant", "downsampling variant", choices=zoo.VARIANTS)
    _train_option(model, "--width-multiplier", "channel width factor", type=float)
    _train_option(model, "--filt-size", "blur filter size (blur variant)", type=int)
    _train_option(
        model, "--padding", "padding of convolutions", choices=("zero", "circular")
    )
    _train_option(
        model,
        "--polyphase-order",
        "polyphase component order (group/conv3d variants)",
        choices=("fixed", "aps"),
    )

    data = parser.add_argument_group("data")
    _train_option(
        data,
        "--dataset",
        "fashion_mnist, mnist, folder (one sub-folder per class, with --data-dir) "
        "or a tensorflow-datasets name",
    )
    _train_option(
        data, "--data-dir", "where the data set is (default: its usual place)"
    )
    _train_option(data, "--augment", "training augmentation", choices=training.AUGMENTS)
    _train_option(data, "--image-size", "resize images to this size", type=int)
    _train_option(
        data, "--validation-split", "part of the training split held out", type=float
    )
    _train_option(data, "--train-subset", "train on this many examples", type=int)
    _train_option(data, "--test-subset", "test on this many examples", type=int)
    data.add_argument(
        "--no-install-data",
        dest="install_data",
        action="store_false",
        help="never install dataset-fashion-mnist with apt-get when it is missing",
    )

    fit = parser.add_argument_group("optimisation")
    _train_option(fit, "--epochs", "number of epochs", type=int)
    _train_option(fit, "--batch-size", "global batch size", type=int)
    _train_option(
        fit, "--optimizer", "SGD has momentum 0.9", choices=training.OPTIMIZERS
    )
    _train_option(
        fit, "--lr", "peak learning rate (default: 0.1 SGD, 1e-3 Adam)", type=float
    )
    _train_option(
        fit, "--schedule", "learning-rate schedule", choices=training.SCHEDULES
    )
    _train_option(
        fit, "--warmup-fraction", "where the cyclic schedule peaks", type=float
    )
    _train_option(fit, "--weight-decay", "decoupled weight decay", type=float)
    _train_option(fit, "--mixed-precision", "dtype policy", choices=training.PRECISIONS)
    _train_option(fit, "--seed", "random seed", type=int)

    run = parser.add_argument_group("run")
    _train_option(
        run, "--out", "run folder (default: runs/<model>-<variant>-<dataset>)"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="delete the run folder first"
    )
    _train_option(
        run,
        "--strategy",
        "tf.distribute strategy; auto: MirroredStrategy on more than one GPU; "
        "multiworker reads TF_CONFIG",
        choices=training.STRATEGIES,
    )
    _train_option(
        run, "--consistency-images", "validation images per epoch check", type=int
    )
    _train_option(run, "--consistency-samples", "shift pairs per image", type=int)
    _train_option(run, "--max-shift", "shifts are in [0, max-shift) px", type=int)
    _train_option(
        run,
        "--verbose",
        "0 silent, 1 progress bars, 2 one line per epoch",
        type=int,
        choices=(0, 1, 2),
    )
    parser.set_defaults(run=run_train)


def run_train(args):
    options = {name: getattr(args, name) for name in TRAIN_DEFAULTS}
    training.train(training.TrainConfig(**options), overwrite=args.overwrite)


COMMANDS = [add_train_parser]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-shiftinv",
        description="Shift-invariant convnets for Keras 3: train, evaluate, export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Runs one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:  # bad values, missing data (DataNotFoundError)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command again to continue from the last "
            "finished epoch",
            file=sys.stderr,
        )
        return 130
    return 0
