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


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default unless it is None, a flag's, or already told."""

    def _get_help_string(self, action):
        default = action.default
        if default in (None, argparse.SUPPRESS) or isinstance(default, bool):
            return action.help
        if "default" in action.help:
            return action.help
        return f"{action.help} (default: %(default)s)"


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
        formatter_class=_HelpFormatter,
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
    _train_option(
        data, "--test-split", "split of the final evaluation (e.g. validation)"
    )
    _train_option(
        data, "--train-subset", "train on this many examples (0: all)", type=int
    )
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


def add_evaluate_parser(subparsers):
    import inspect

    from keras_shiftinv import evaluate, metrics

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(evaluate.evaluate).parameters.items()
    }
    parser = subparsers.add_parser(
        "evaluate",
        help="shift-robustness report of saved models",
        description=(
            "Accuracy (unshifted and under random shifts), shift consistency, "
            "classification variation, diagonal-shift stability curves and "
            "per-layer equivariance of each model. Writes report.json, report.md "
            "and PNG plots to --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="PATH",
        help="a saved .keras model (e.g. RUN_DIR/best.keras); repeat to compare",
    )
    parser.add_argument(
        "--dataset",
        default=defaults["dataset"],
        help="fashion_mnist, mnist, folder (with --data-dir) or a "
        "tensorflow-datasets name",
    )
    parser.add_argument("--data-dir", help="where the data set is")
    parser.add_argument("--split", default=defaults["split"], help="data split")
    parser.add_argument(
        "--shift", default=defaults["shift"], choices=metrics.MODES, help="shift kind"
    )
    parser.add_argument(
        "--max-shift",
        type=int,
        default=defaults["max_shift"],
        help="random shifts in [0, N) px; curves and maps up to N",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=defaults["samples"],
        help="random shifts (pairs, for consistency) per image",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=defaults["images"],
        help="images for accuracy and consistency",
    )
    parser.add_argument(
        "--detail-images",
        type=int,
        default=defaults["detail_images"],
        help="images for variation, stability and equivariance",
    )
    parser.add_argument(
        "--image-size", type=int, help="resize images (models trained with it)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--out", default=defaults["out_dir"], help="report folder")
    parser.add_argument(
        "--verbose", type=int, default=defaults["verbose"], choices=(0, 1)
    )
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from keras_shiftinv import evaluate

    report = evaluate.evaluate(
        args.models,
        dataset=args.dataset,
        out_dir=args.out,
        split=args.split,
        data_dir=args.data_dir,
        shift=args.shift,
        max_shift=args.max_shift,
        samples=args.samples,
        images=args.images,
        detail_images=args.detail_images,
        image_size=args.image_size,
        seed=args.seed,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    print(evaluate.markdown(report))
    print(f"Report written to {args.out}/ (report.json, report.md, PNG plots).")


def add_export_parser(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="SavedModel for TensorFlow Serving",
        description=(
            "Write a saved Keras model as a SavedModel in TF Serving's layout, "
            "OUT/VERSION/, with a serving_default signature: uint8 images [batch, "
            "height, width, channels] in ('images'), 'probabilities' (float32) and "
            "'classes' (int64) out. An existing version is never replaced without "
            "--overwrite."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help=".keras file")
    parser.add_argument(
        "--out",
        required=True,
        metavar="BASE_DIR",
        help="model base directory, e.g. models/fmnist (TF Serving's "
        "--model_base_path)",
    )
    parser.add_argument(
        "--version", type=int, help="version number (default: the next free one)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing version"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--from-logits",
        dest="from_logits",
        action="store_const",
        const=True,
        help="the model outputs logits: add a softmax (default: detect)",
    )
    output.add_argument(
        "--probabilities",
        dest="from_logits",
        action="store_const",
        const=False,
        help="the model outputs probabilities (default: detect)",
    )
    parser.set_defaults(run=run_export)


def run_export(args):
    import os

    from keras_shiftinv.export import export_for_serving
    from keras_shiftinv.models import load_model

    path = export_for_serving(
        load_model(args.model),
        args.out,
        version=args.version,
        overwrite=args.overwrite,
        from_logits=args.from_logits,
    )
    print(
        f"SavedModel written to {path}\n"
        "Inspect: saved_model_cli show --all --dir " + path + "\n"
        "Serve:   tensorflow_model_server --rest_api_port=8501 "
        f"--model_name={os.path.basename(os.path.dirname(path))} "
        f"--model_base_path={os.path.dirname(path)}"
    )


def add_convert_weights_parser(subparsers):
    import zoo

    parser = subparsers.add_parser(
        "convert-weights",
        help="a torchvision or antialiased-cnns checkpoint as a .keras model",
        description=(
            "Load a PyTorch checkpoint (a state dict) of torchvision's or "
            "antialiased-cnns' ResNet-18/34/50 or VGG-11/13/16 into the zoo model "
            "of flavor 'torchvision' and save it as a .keras file that takes raw "
            "RGB pixels in [0, 255] (torchvision's mean/std normalization is inside "
            "the model) and outputs probabilities, as evaluate and export expect. "
            "Prints the top-1 class of a test image, computed by the saved file."
        ),
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FILE",
        help=".pth/.pt (read with torch), .safetensors or .npz state dict",
    )
    parser.add_argument("--model", required=True, choices=zoo.list_models())
    parser.add_argument(
        "--variant",
        choices=("baseline", "blur"),
        help="baseline (torchvision) or blur (antialiased-cnns); default: blur if "
        "the checkpoint has blur filters",
    )
    parser.add_argument(
        "--filt-size", type=int, help="blur filter size; default: the checkpoint's"
    )
    bn = parser.add_mutually_exclusive_group()
    bn.add_argument(
        "--batch-norm",
        dest="batch_norm",
        action="store_const",
        const=True,
        help="VGG: a vgg*_bn checkpoint (default: read from the checkpoint)",
    )
    bn.add_argument(
        "--no-batch-norm", dest="batch_norm", action="store_const", const=False
    )
    parser.add_argument(
        "--image-size", type=int, default=224, help="input size (default: 224)"
    )
    parser.add_argument("--out", required=True, metavar="PATH.keras")
    parser.add_argument(
        "--image",
        help="image file to classify (resized to --image-size); default: a "
        "synthetic test image",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out")
    parser.set_defaults(run=run_convert_weights)


def run_convert_weights(args):
    import os

    import keras
    import numpy as np

    import zoo
    from keras_shiftinv.models import load_model

    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must end with .keras. Received: {args.out!r}")
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"{args.out!r} exists: pass --overwrite to replace it.")
    model = zoo.convert_checkpoint(
        args.source,
        args.model,
        variant=args.variant,
        filt_size=args.filt_size,
        batch_norm=args.batch_norm,
        image_size=args.image_size,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    size = (args.image_size, args.image_size)
    if args.image:
        image = keras.utils.img_to_array(
            keras.utils.load_img(args.image, target_size=size)
        )
        label = args.image
    else:
        # Smooth colour gradients: deterministic and needs no file.
        y, x = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
        image = 255 * np.stack([x, y, (x + y) / 2], axis=-1)
        label = "the synthetic test image"
    saved = load_model(args.out)
    probabilities = keras.ops.convert_to_numpy(
        saved(image[None].astype("float32"), training=False)
    )[0]
    top = int(np.argmax(probabilities))
    print(
        f"{model.name} ({model.count_params():,} parameters) written to {args.out}\n"
        f"top-1 class of {label}: {top} (probability {probabilities[top]:.3f}; "
        "ImageNet class indices, e.g. 281-285 are cats)\n"
        f"Export it: python -m keras_shiftinv export --model {args.out} "
        "--out models/NAME"
    )


COMMANDS = [
    add_train_parser,
    add_evaluate_parser,
    add_export_parser,
    add_convert_weights_parser,
]


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
        resume = (
            ": run the same command again to continue from the last finished epoch"
            if args.command == "train"
            else ""
        )
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
    return 0
