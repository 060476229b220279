"""The command line: `python -m keras_shiftinv COMMAND [options]` (or `keras-shiftinv`).

Each command is a pair of functions: `add_<command>_parser(parser)` declares the
options of its sub-parser and sets `run=<function(args)>`; `COMMANDS` maps each
command to its one-line help and its `add_` function. Only the command being run
gets its options (and imports what they need), so `--help`, `--version` and a
command's own `--help` import neither Keras nor TensorFlow beyond what that command
needs. Errors the user can fix (bad options, missing data) are ValueErrors: `main`
prints them as one `error: ...` line and exits with status 2, without a traceback.
"""

import argparse
import dataclasses
import shutil
import sys

from keras_shiftinv import __version__
from keras_shiftinv.app.deploy import FORMATS, ExportCheckError


def train_defaults():
    """The train command's options and their defaults (`TrainConfig`)."""
    from keras_shiftinv.app.train_config import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default unless it is None, a flag's, or already told."""

    def _get_help_string(self, action):
        default = action.default
        if default in (None, argparse.SUPPRESS) or isinstance(default, bool):
            return action.help
        if "default" in action.help:
            return action.help
        return f"{action.help} (default: %(default)s)"


def _train_option(group, flag, help, name=None, **kwargs):
    name = name or flag.lstrip("-").replace("-", "_")
    default = train_defaults()[name]
    group.add_argument(flag, dest=name, default=default, help=help, **kwargs)


def add_train_parser(parser):
    import zoo
    from keras_shiftinv import schedules, validation, variants
    from keras_shiftinv.app import train_config

    parser.description = (
        "Train a zoo model with model.fit and report its test accuracy and shift "
        "consistency. Writes config.json, log.csv, best.keras, final.keras, "
        "tensorboard/, curves.png and summary.json to the run folder. A run "
        "stopped at any point continues from its last finished epoch when the "
        "same command is run again."
    )
    parser.formatter_class = _HelpFormatter
    model = parser.add_argument_group("model")
    _train_option(model, "--model", "zoo model", choices=zoo.list_models())
    _train_option(model, "--variant", "downsampling variant", choices=zoo.VARIANTS)
    _train_option(model, "--width-multiplier", "channel width factor", type=float)
    _train_option(model, "--filt-size", "blur filter size (blur variant)", type=int)
    _train_option(
        model, "--padding", "padding of convolutions", choices=validation.CONV_PAD_MODES
    )
    _train_option(
        model,
        "--polyphase-order",
        "polyphase component order (group/conv3d variants)",
        choices=validation.POLYPHASE_ORDERS,
    )
    _train_option(
        model,
        "--placement",
        "where group/conv3d put the module: replace the strided layer, or "
        "dense (the layer at stride 1, the module subsamples)",
        choices=variants.PLACEMENTS,
    )
    _train_option(
        model,
        "--module-initializer",
        "group/conv3d modules start as BlurPool2D(filt-size) with 'lowpass'",
        choices=[c for c in variants.MODULE_INITIALIZERS if c],
    )
    _train_option(
        model,
        "--lowpass-penalty",
        "group/conv3d modules add this weight times the high-frequency share of "
        "their effective filters to the training loss",
        name="module_lowpass_penalty",
        type=float,
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
    _train_option(
        data, "--augment", "training augmentation", choices=train_config.AUGMENTS
    )
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
        fit, "--optimizer", "SGD has momentum 0.9", choices=schedules.OPTIMIZERS
    )
    _train_option(
        fit, "--lr", "peak learning rate (default: 0.1 SGD, 1e-3 Adam)", type=float
    )
    _train_option(
        fit, "--schedule", "learning-rate schedule", choices=schedules.SCHEDULES
    )
    _train_option(
        fit, "--warmup-fraction", "where the cyclic schedule peaks", type=float
    )
    _train_option(fit, "--weight-decay", "decoupled weight decay", type=float)
    _train_option(
        fit, "--mixed-precision", "dtype policy", choices=train_config.PRECISIONS
    )
    _train_option(fit, "--seed", "random seed", type=int)

    run = parser.add_argument_group("run")
    _train_option(
        run, "--out", "run folder (default: runs/<model>-<variant>-<dataset>)"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="train again: delete the files of the run in --out first (a folder "
        "that holds no run is never touched)",
    )
    _train_option(
        run,
        "--strategy",
        "tf.distribute strategy; auto: MirroredStrategy on more than one GPU; "
        "multiworker reads TF_CONFIG",
        choices=train_config.STRATEGIES,
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
    from keras_shiftinv.app import training

    options = {name: getattr(args, name) for name in train_defaults()}
    training.train(training.TrainConfig(**options), overwrite=args.overwrite)


def add_evaluate_parser(parser):
    import inspect

    from keras_shiftinv.app import evaluate, metrics

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(evaluate.evaluate).parameters.items()
    }
    parser.description = (
        "Accuracy (unshifted and under random shifts), shift consistency, "
        "classification variation, diagonal-shift stability curves and "
        "per-layer equivariance of each model. Writes report.json, report.md "
        "and PNG plots to --out."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
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
        "--overwrite",
        action="store_true",
        help="replace the report of an earlier evaluation in --out",
    )
    parser.add_argument(
        "--verbose", type=int, default=defaults["verbose"], choices=(0, 1)
    )
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from keras_shiftinv.app import evaluate

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
        overwrite=args.overwrite,
    )
    print(evaluate.markdown(report))
    print(f"Report written to {args.out}/ (report.json, report.md, PNG plots).")


def add_export_parser(parser):
    parser.description = (
        "Write a saved Keras model for serving: by default a SavedModel in TF "
        "Serving's layout, OUT/VERSION/, or with --format an ONNX, LiteRT or "
        "OpenVINO file. Every format takes uint8 images [batch, height, width, "
        "channels] ('images') and returns 'probabilities' (float32) and "
        "'classes' (int64); the written model is then run in its runtime and "
        "compared with Keras, and the command fails, leaving nothing behind, if "
        "it does not run or does not match. An existing version or file is never "
        "replaced without --overwrite."
    )
    parser.add_argument("--model", required=True, metavar="PATH", help=".keras file")
    parser.add_argument(
        "--format",
        default="saved_model",
        choices=FORMATS,
        help="saved_model (default): TF Serving; onnx: onnxruntime; litert: "
        "LiteRT (TensorFlow Lite) builtin ops; openvino: an IR .xml and .bin "
        '(ONNX, LiteRT and OpenVINO need: pip install "keras-shiftinv[deploy]")',
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="saved_model: the model base directory, e.g. models/fmnist (TF "
        "Serving's --model_base_path); the other formats: the file, e.g. "
        "fmnist.onnx, fmnist.tflite, fmnist.xml",
    )
    parser.add_argument(
        "--version",
        type=int,
        help="saved_model: version number (default: the next free one)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing version or file"
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

    from keras_shiftinv.app import deploy
    from keras_shiftinv.models import load_model

    if args.format != "saved_model":
        if args.version is not None:
            raise ValueError(
                f"--version numbers TF Serving's versions: it applies to --format "
                f"saved_model only. Received: --format {args.format} --version "
                f"{args.version}"
            )
        # Before the model is loaded: a bad --out or a missing runtime fails at once.
        deploy.check_path(args.out, args.format, args.overwrite)
        _require_runtime(deploy, args.format)
        path = deploy.export_artifact(
            load_model(args.model),
            args.out,
            args.format,
            overwrite=args.overwrite,
            from_logits=args.from_logits,
        )
        print(
            f"{args.format} model written to {path}, checked in "
            f"{deploy.PACKAGES[args.format][-1]} against Keras (probabilities "
            f"within {deploy.TOLERANCE:g})."
        )
        return

    from keras_shiftinv.app.export import export_for_serving, version_dir
    from keras_shiftinv.app.input_fit import recorded, recorded_class_names
    from keras_shiftinv.models import is_logits

    # Before the model is loaded: a --out that cannot be written fails at once.
    target = version_dir(args.out, args.version, args.overwrite)
    model = load_model(args.model)
    path = export_for_serving(
        model,
        target,
        overwrite=args.overwrite,
        from_logits=args.from_logits,
        input_fit=recorded(args.model),
        class_names=recorded_class_names(args.model),
    )
    try:
        deploy.verify(
            deploy.load_runtime(path, "saved_model"),
            model,
            is_logits(model, args.from_logits, strict=True),
            "saved_model",
        )
    except deploy.ExportCheckError:
        # TF Serving must not pick up a version that gives other answers.
        shutil.rmtree(path, ignore_errors=True)
        raise
    print(
        f"SavedModel written to {path}, checked in TensorFlow against Keras.\n"
        "Inspect: saved_model_cli show --all --dir " + path + "\n"
        "Serve:   tensorflow_model_server --rest_api_port=8501 "
        f"--model_name={os.path.basename(os.path.dirname(path))} "
        f"--model_base_path={os.path.dirname(path)}"
    )


def _require_runtime(deploy, format):
    try:
        deploy.require(format)
    except ImportError as error:
        raise ValueError(str(error)) from error


def add_predict_parser(parser):
    parser.description = (
        "Classify image files with a trained model: a .keras file (e.g. "
        "RUN_DIR/best.keras) or a SavedModel written by export (a version folder, "
        "or the base folder: its highest version). Prints one line per image: "
        "the class (with its name when the run folder's config.json has it) and "
        "its probability. Images are converted to the model's channels and "
        "resized to its input size."
    )
    parser.add_argument(
        "--model", required=True, metavar="PATH", help=".keras file or SavedModel"
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.set_defaults(run=run_predict)


def add_convert_weights_parser(parser):
    import zoo
    from zoo.blocks import TORCHVISION_VARIANTS

    parser.description = (
        "Load a PyTorch checkpoint (a state dict) of torchvision's or "
        "antialiased-cnns' ResNet-18/34/50 or VGG-11/13/16 into the zoo model "
        "of flavor 'torchvision' and save it as a .keras file that takes raw "
        "RGB pixels in [0, 255] (torchvision's mean/std normalization is inside "
        "the model) and outputs probabilities, as evaluate and export expect. "
        "Prints the top-1 class of a test image, computed by the saved file."
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
        choices=TORCHVISION_VARIANTS,
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
    from keras_shiftinv.app._files import FileLock, atomic_path
    from keras_shiftinv.app._paths import check_writable_dir
    from keras_shiftinv.models import load_model

    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must end with .keras. Received: {args.out!r}")
    folder = os.path.dirname(os.path.abspath(args.out))
    check_writable_dir(folder, "--out")
    os.makedirs(folder, exist_ok=True)
    with FileLock(args.out + ".lock", f"The model file {args.out!r}", "--out"):
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
        # A kill or a full disk leaves the previous file, not a truncated one.
        with atomic_path(args.out) as path:
            model.save(path)
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


def run_predict(args):
    from keras_shiftinv.app import predict

    for line in predict.predict_lines(args.model, args.images):
        print(line)


def add_models_parser(parser):
    parser.description = "List the zoo's models and variants (--model, --variant)."
    parser.set_defaults(run=run_models)


def run_models(args):
    import zoo

    print("models:   " + ", ".join(zoo.list_models()))
    print("variants: " + ", ".join(zoo.VARIANTS))


# name: (one-line help, function adding the command's options)
COMMANDS = {
    "train": (
        "train a zoo model (with no options: a quick Fashion-MNIST run)",
        add_train_parser,
    ),
    "evaluate": ("shift-robustness report of saved models", add_evaluate_parser),
    "export": (
        "SavedModel for TensorFlow Serving, or ONNX, LiteRT, OpenVINO",
        add_export_parser,
    ),
    "predict": ("classify image files with a trained model", add_predict_parser),
    "models": ("list the zoo's models and variants", add_models_parser),
    "convert-weights": (
        "a torchvision or antialiased-cnns checkpoint as a .keras model",
        add_convert_weights_parser,
    ),
}


def build_parser(commands=None):
    """The parser of the command line; only the `commands` named (all when None)
    get their options, the others are listed with their help."""
    parser = argparse.ArgumentParser(
        prog="keras-shiftinv",
        description="Shift-invariant convnets for Keras 3: train, evaluate, "
        "export, predict, convert PyTorch weights.",
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-shiftinv {__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, add_options) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help)
        if commands is None or name in commands:
            add_options(subparser)
    return parser


def main(argv=None):
    """Runs one command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word that is not an option is the command (the top-level options
    # take no value).
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        # Before any work (and before the options, which import Keras): a missing
        # module is one line saying what to install, not a traceback at the end.
        from keras_shiftinv import _install

        absent = _install.missing(_install.COMMAND_MODULES[command])
        if absent:
            print(
                f"error: {_install.message(absent, f'the {command} command')}",
                file=sys.stderr,
            )
            return 2
    args = build_parser([command]).parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:  # bad values, missing data (DataNotFoundError)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ExportCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = (
            ": run the same command again to continue from the last finished epoch"
            if args.command == "train"
            else ""
        )
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
    return 0
