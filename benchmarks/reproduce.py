"""Reproduce the seed papers' shift-invariance results at small scale.

On Fashion-MNIST (zero-padded to 32x32), trains VGG13 and ResNet-18 (CIFAR stem) in
the variants baseline; blur with filters of 2, 3, 5 and 7 taps; group and conv3d
(`ShiftInvariantDown`); and the exact ones, aps and group / conv3d with
polyphase_order="aps" ("group-aps", "conv3d-aps"). As in Zhang's ICLR draft ("in all
our experiments, we use circular shifting and convolution"), every conv, pool and blur
pads circularly (`--padding zero` makes the same runs with zero padding). Each model
is trained without and with shift augmentation (random crop of the image padded by 4
px, and flip), as Table 1 of that draft does. Every run has the same seed, schedule
and epochs (`keras_shiftinv.training.train`). Then, for each run, on the test split:
accuracy without shifts and under random circular shifts, circular and crop shift
consistency, classification variation and the diagonal stability curve
(`keras_shiftinv.metrics`).

Writes to the output folder (default benchmarks/results/<mode>[-zero]/):

    records/<run>.json   one record per run (its command and configuration too);
                         a run whose record exists is skipped, so an interrupted
                         invocation continues where it stopped
    results.json         every record, rewritten after each run
    train/<run>/         the training run folders (models, logs; not committed)
    equivariance/*.json  per-layer equivariance of VGG13 baseline and blur5
    *.png                consistency against accuracy (Zhang's Figure 5), diagonal
                         stability of baseline vs the best variant (Figure 9 of the
                         shift-invariant-module paper), per-layer equivariance maps
                         (Zhang's Figure 4)
    report.md            the tables and the comparison with the papers

and puts report.md into BENCHMARKS.md, in the subsection of its mode inside the
`reproduce` section (other sections are left as they are). Results of other seeds
(`--seed N`) go to <mode>[-zero]-seedN/; once a run exists under two seeds or more,
<mode>[-zero]-seeds/ gets the mean and spread over the seeds, each variant's gain
over the baseline of the same seed, and a plot (also a BENCHMARKS.md subsection).

    python benchmarks/reproduce.py --quick       # 16 runs, about 7 minutes
    python benchmarks/reproduce.py               # full mode: 40 runs, about 45 minutes
    for seed in 1 2; do python benchmarks/reproduce.py --seed $seed \\
        --variants baseline blur5 group conv3d --augment none; done
    python benchmarks/reproduce.py --quick --models vgg13 --variants baseline blur5 \\
        --augment none
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from keras_shiftinv import (  # noqa: E402
    data,
    diagnostics,
    evaluate,
    input_fit,
    plots,
    run_folder,
    training,
)
from keras_shiftinv.models import load_model  # noqa: E402

# Our name: the zoo options of the variant.
VARIANTS = {
    "baseline": {"variant": "baseline"},
    "blur2": {"variant": "blur", "filt_size": 2},
    "blur3": {"variant": "blur", "filt_size": 3},
    "blur5": {"variant": "blur", "filt_size": 5},
    "blur7": {"variant": "blur", "filt_size": 7},
    "blur4": {"variant": "blur", "filt_size": 4},
    "group": {"variant": "group"},
    "conv3d": {"variant": "conv3d"},
    # The seed's module in both readings of the paper, from random kernels
    # (Keras' he_normal) or from the 4-tap binomial filter ("lowpass").
    "group-lowpass": {"variant": "group", "module_initializer": "lowpass"},
    "group-dense": {"variant": "group", "placement": "dense"},
    "group-dense-lowpass": {
        "variant": "group",
        "placement": "dense",
        "module_initializer": "lowpass",
    },
    "conv3d-lowpass": {"variant": "conv3d", "module_initializer": "lowpass"},
    "conv3d-dense": {"variant": "conv3d", "placement": "dense"},
    "conv3d-dense-lowpass": {
        "variant": "conv3d",
        "placement": "dense",
        "module_initializer": "lowpass",
    },
    # Adaptive polyphase sampling alone (no blur), as in Chaman & Dokmanic.
    "aps": {"variant": "aps", "filt_size": 1},
    "group-aps": {"variant": "group", "polyphase_order": "aps"},
    "conv3d-aps": {"variant": "conv3d", "polyphase_order": "aps"},
}
# Made only by the decisive mode (and the VGG13 check of "group-dense").
DECISIVE_ONLY = (
    "blur4",
    "group-lowpass",
    "group-dense",
    "group-dense-lowpass",
    "conv3d-lowpass",
    "conv3d-dense",
    "conv3d-dense-lowpass",
)
# Exactly invariant to circular shifts (in inference mode) with circular padding.
EXACT = ("aps", "group-aps", "conv3d-aps")
MODELS = ("vgg13", "resnet18")
PADDINGS = ("circular", "zero")
# Our name: the `augment` option of the training pipeline.
AUGMENTS = {"none": "none", "shift": "crop_flip"}
AUGMENT_TITLES = {
    "none": "without shift augmentation",
    "shift": "with shift augmentation",
}
SECTION = "reproduce"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one mode trains and measures (the same for every run of the mode).

    Args:
        width_multiplier: channel widths of the zoo models, relative to the papers'.
        train_subset: training examples (None: all but the validation ones).
        epochs: epochs of every run.
        batch_size: training and evaluation batch size.
        validation_split: fraction of the training split held out (best epoch).
        test_images: test images for accuracy and consistency.
        detail_images: test images for variation and diagonal stability.
        samples: random shift pairs per test image for consistency (and shifts
            for the shifted accuracy).
        max_shift: random shifts are drawn from [0, max_shift) px per axis.
        stability_shift: the diagonal stability curve goes to (d, d) for this d.
        equivariance_images: test images for the per-layer equivariance maps.
        equivariance_shift: the maps cover the shifts [0, equivariance_shift]^2.
        lr: peak learning rate of SGD (momentum 0.9) with one triangular cycle.
        seed: seed of weights, data order, augmentation and shifts.
        padding: padding of every conv, pool and blur of every model: "circular"
            (Zhang's protocol: circular convolution under circular shifts) or
            "zero".
        models, variants, augments: the runs the mode makes by default (every
            combination).
    """

    width_multiplier: float
    train_subset: int | None
    epochs: int
    batch_size: int
    validation_split: float
    test_images: int
    detail_images: int
    samples: int
    max_shift: int = 8
    stability_shift: int = 32
    equivariance_images: int = 32
    equivariance_shift: int = 8
    lr: float = 0.1
    seed: int = 0
    padding: str = "circular"
    models: tuple = MODELS
    variants: tuple = tuple(VARIANTS)
    augments: tuple = tuple(AUGMENTS)


MODES = {
    "quick": Settings(
        width_multiplier=1 / 8,
        train_subset=5000,
        epochs=1,
        batch_size=64,
        validation_split=0.02,
        test_images=512,
        detail_images=64,
        samples=4,
        # About 7 minutes (the issue asks about 5): the baseline, the two
        # anti-aliasing methods and one exact variant.
        variants=("baseline", "blur5", "group", "group-aps"),
    ),
    "full": Settings(
        width_multiplier=1 / 8,
        train_subset=12000,
        epochs=3,
        batch_size=128,
        validation_split=0.05,
        test_images=2048,
        detail_images=128,
        samples=2,
        equivariance_images=64,
        equivariance_shift=16,
        lr=0.05,
        variants=tuple(v for v in VARIANTS if v not in DECISIVE_ONLY),
    ),
    # Does the seed's module learn to anti-alias when it trains long enough?
    # ResNet-18 on all 57,000 training images (3,000 held out), random crop and
    # flip, 2 epochs of 1,188 SGD steps; run under seeds 0, 1 and 2.
    "decisive": Settings(
        width_multiplier=1 / 8,
        train_subset=None,
        epochs=2,
        batch_size=48,
        validation_split=0.05,
        test_images=5000,
        detail_images=128,
        samples=2,
        lr=0.05,
        models=("resnet18",),
        variants=(
            "baseline",
            "blur4",
            "group",
            "group-lowpass",
            "group-dense",
            "group-dense-lowpass",
            "conv3d",
            "conv3d-lowpass",
            "conv3d-dense",
            "conv3d-dense-lowpass",
            "aps",
            "group-aps",
        ),
        augments=("shift",),
    ),
}


def run_name(model, variant, augment):
    return f"{model}-{variant}-{augment}"


def label(mode, settings):
    """The name of a mode's results (folder, BENCHMARKS.md subsection)."""
    parts = [mode]
    if settings.padding != MODES[mode].padding:
        parts.append(settings.padding)
    if settings.seed != MODES[mode].seed:
        parts.append(f"seed{settings.seed}")
    return "-".join(parts)


def train_config(settings, model, variant, augment, out_dir, data_dir, verbose):
    """The `training.TrainConfig` options of one run."""
    options = {"filt_size": 4, "padding": settings.padding, "polyphase_order": "fixed"}
    options.update(VARIANTS[variant])
    return {
        "model": model,
        "dataset": "fashion_mnist",
        "data_dir": data_dir,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "optimizer": "sgd",
        "lr": settings.lr,
        "schedule": "cyclic",
        "augment": AUGMENTS[augment],
        "width_multiplier": settings.width_multiplier,
        "seed": settings.seed,
        "out": os.path.join(out_dir, "train", run_name(model, variant, augment)),
        "validation_split": settings.validation_split,
        "train_subset": settings.train_subset,
        "test_subset": settings.test_images,
        "consistency_images": min(256, settings.test_images),
        "max_shift": settings.max_shift,
        "install_data": False,
        "verbose": verbose,
        **options,
    }


def test_images(count, batch_size, data_dir):
    """The first `count` test images, fitted to the model and batched as in
    training (`keras_shiftinv.input_fit`)."""
    ds, info = data.load("fashion_mnist", "test", data_dir=data_dir)
    fit = input_fit.fit_options(info.image_shape)
    return data.pipeline(ds.take(count), batch_size, training=False, **fit).cache()


def test_batches(settings, data_dir):
    """(test data, detail data): the first test images, batched as in training."""
    return tuple(
        test_images(count, settings.batch_size, data_dir)
        for count in (settings.test_images, settings.detail_images)
    )


def measure(model, test, detail, settings):
    """The shift-robustness numbers of one trained model."""
    return evaluate.measure(
        model,
        test,
        detail,
        names=(
            "accuracy",
            "shifted_accuracy",
            "consistency_circular",
            "consistency_crop",
            "consistency_crop_symmetric",
            "variation",
            "stability",
        ),
        max_shift=settings.max_shift,
        samples=settings.samples,
        seed=settings.seed,
        stability_shift=settings.stability_shift,
    )


def machine():
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout
    except OSError:
        nproc = str(os.cpu_count())
    return {"nproc": int(nproc.strip()), "cpu": cpu}


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Per process: two invocations may share an output folder.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_records(out_dir):
    folder = os.path.join(out_dir, "records")
    if not os.path.isdir(folder):
        return []
    records = []
    for name in os.listdir(folder):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                records.append(json.load(f))
    return sorted(records, key=_plan_order)


def _plan_order(record):
    def index(names, name):
        names = list(names)
        return names.index(name) if name in names else len(names)

    return (
        index(AUGMENTS, record["augment"]),
        index(MODELS, record["model"]),
        index(VARIANTS, record["variant"]),
    )


def run(
    mode,
    settings,
    out_dir,
    data_dir=None,
    benchmarks=None,
    command=None,
    verbose=1,
    commit=False,
):
    """Trains and measures every (augment, model, variant) run of `settings` not
    done yet, writing its record, results.json, the plots, report.md and (if
    given) the BENCHMARKS.md section after each run, and committing them with
    `commit=True`. Returns the records of `out_dir`."""
    command = command or shlex.join(
        ["python", "benchmarks/reproduce.py", *sys.argv[1:]]
    )
    plan = [
        (a, m, v)
        for a in settings.augments
        for m in settings.models
        for v in settings.variants
    ]
    start = time.perf_counter()
    test = detail = None
    for k, (augment, model, variant) in enumerate(plan, start=1):
        name = run_name(model, variant, augment)
        path = os.path.join(out_dir, "records", f"{name}.json")
        prefix = f"[{k}/{len(plan)}] {name}:"
        if os.path.exists(path):
            print(f"{prefix} done before ({path})", flush=True)
            continue
        print(f"{prefix} training", flush=True)
        if test is None:
            test, detail = test_batches(settings, data_dir)
        config = train_config(
            settings, model, variant, augment, out_dir, data_dir, verbose
        )
        run_start = time.perf_counter()
        summary = training.train(config)
        trained = time.perf_counter() - run_start
        network = load_model(summary["best_model"])
        downsampling = diagnostics.downsampling_report(
            network,
            initial_weights=os.path.join(config["out"], run_folder.INITIAL_WEIGHTS),
        )
        record = {
            "name": name,
            "mode": mode,
            "model": model,
            "variant": variant,
            "augment": augment,
            "padding": settings.padding,
            "exact": variant in EXACT and settings.padding == "circular",
            "parameters": summary["parameters"],
            **measure(network, test, detail, settings),
            "downsampling": downsampling,
            "downsampling_summary": diagnostics.summarize(downsampling),
            "train_test_accuracy": summary["test_accuracy"],
            "best_epoch": summary["best_epoch"],
            "train_seconds": round(trained, 1),
            "seconds": round(time.perf_counter() - run_start, 1),
            "command": command,
            "settings": dataclasses.asdict(settings),
            "train_config": config,
            "machine": machine(),
            "load_average": round(os.getloadavg()[0], 2),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "versions": {"keras": keras.__version__},
        }
        _write_json(path, record)
        print(
            f"{prefix} accuracy {record['accuracy']:.4f}, consistency "
            f"{record['consistency_circular']:.4f} circular / "
            f"{record['consistency_crop']:.4f} crop, variation "
            f"{record['variation']:.2e}; {record['seconds']:.0f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        keras.backend.clear_session()
        report(mode, settings, out_dir, benchmarks, data_dir)
        if commit:
            commit_results(
                out_dir, benchmarks, f"reproduce {label(mode, settings)}: {name}"
            )
    records = read_records(out_dir)
    if records and test is None:
        # Nothing new was run: the report may still be missing or out of date.
        report(mode, settings, out_dir, benchmarks, data_dir)
    return records


def commit_results(out_dir, benchmarks, message):
    """Commits the results folders of this mode (seeds included) and the
    BENCHMARKS.md file in their git repository, so a long reproduction keeps
    what it has made if the machine goes away."""
    paths = [os.path.dirname(os.path.normpath(out_dir))]
    if benchmarks:
        paths.append(benchmarks)
    root = os.path.dirname(os.path.normpath(out_dir))
    subprocess.run(["git", "-C", root, "add", "--", *paths], check=True)
    # Nothing staged (a run whose files were committed before) is not an error.
    staged = subprocess.run(["git", "-C", root, "diff", "--cached", "--quiet"])
    if staged.returncode:
        subprocess.run(["git", "-C", root, "commit", "-q", "-m", message], check=True)


def best_variant(records, model, augment):
    """The most circularly consistent non-baseline run of (model, augment) that
    trained, the more accurate one among equals."""
    candidates = [
        r
        for r in records
        if r["model"] == model
        and r["augment"] == augment
        and r["variant"] != "baseline"
        and not diverged(r)
    ]
    return max(
        candidates,
        key=lambda r: (r["consistency_circular"], r["accuracy"]),
        default=None,
    )


def find(records, model, variant, augment):
    return next(
        (
            r
            for r in records
            if (r["model"], r["variant"], r["augment"]) == (model, variant, augment)
        ),
        None,
    )


def equivariance_entries(records, settings, out_dir, data_dir):
    """Per-layer equivariance of VGG13 baseline and blur5 (or the most consistent
    blur run), trained without augmentation if that was run, as in Zhang's Figure
    4; cached in equivariance/."""
    vgg = [r for r in records if r["model"] == "vgg13"]
    augment = "none" if any(r["augment"] == "none" for r in vgg) else "shift"
    baseline = find(vgg, "vgg13", "baseline", augment)
    blurs = [r for r in vgg if r["variant"].startswith("blur")]
    other = find(vgg, "vgg13", "blur5", augment) or best_variant(
        blurs, "vgg13", augment
    )
    if baseline is None or other is None:
        return []
    entries = []
    for record in (baseline, other):
        path = os.path.join(out_dir, "equivariance", f"{record['name']}.json")
        if not os.path.exists(path):
            images = test_images(
                settings.equivariance_images, settings.batch_size, data_dir
            )
            model_path = os.path.join(record["train_config"]["out"], "best.keras")
            layers = evaluate.layer_equivariance(
                load_model(model_path),
                images,
                max_shift=settings.equivariance_shift,
                batch_size=settings.batch_size,
            )
            _write_json(path, {"name": record["name"], "equivariance": layers})
        with open(path) as f:
            entries.append(json.load(f))
    return entries


def plot_consistency_accuracy(records, path):
    """Zhang's Figure 5: consistency against accuracy, one panel per augmentation
    setting, one colour per variant, one marker per model."""
    augments = [a for a in AUGMENTS if any(r["augment"] == a for r in records)]
    figure = Figure(figsize=(5.5 * len(augments), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(augments), squeeze=False)[0]
    colours = {v: f"C{i % 10}" for i, v in enumerate(VARIANTS)}
    markers = dict(zip(MODELS, "os", strict=True))
    for ax, augment in zip(axes, augments, strict=True):
        for r in records:
            if r["augment"] != augment:
                continue
            ax.scatter(
                100 * r["accuracy"],
                100 * r["consistency_circular"],
                color=colours[r["variant"]],
                marker=markers.get(r["model"], "^"),
                s=45,
                edgecolors="black" if r["exact"] else "none",
            )
            ax.annotate(
                r["variant"],
                (100 * r["accuracy"], 100 * r["consistency_circular"]),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=6,
                color=colours[r["variant"]],
            )
        ax.set_title(f"train {AUGMENT_TITLES[augment]}", fontsize=10)
        ax.set_xlabel("test accuracy, unshifted (%)")
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        for model, marker in markers.items():
            if any(r["model"] == model for r in records):
                ax.scatter([], [], marker=marker, color="gray", label=model)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("circular shift consistency (%)")
    figure.savefig(path, dpi=110)


def make_plots(records, settings, out_dir, data_dir):
    """Writes the PNGs; returns their paths."""
    paths = [os.path.join(out_dir, "consistency_accuracy.png")]
    plot_consistency_accuracy(records, paths[0])
    for augment in AUGMENTS:
        for model in MODELS:
            baseline = find(records, model, "baseline", augment)
            best = best_variant(records, model, augment)
            if baseline is None or best is None:
                continue
            entries = [
                {"name": f"{r['model']} {r['variant']}", "stability": r["stability"]}
                for r in (baseline, best)
            ]
            paths.append(os.path.join(out_dir, f"stability_{model}_{augment}.png"))
            plots.plot_stability(entries, paths[-1])
    entries = equivariance_entries(records, settings, out_dir, data_dir)
    for entry in entries:
        paths.append(os.path.join(out_dir, f"equivariance_{entry['name']}.png"))
        plots.plot_equivariance(entry, paths[-1])
    if entries:
        paths.append(os.path.join(out_dir, "equivariance_layers.png"))
        plots.plot_layer_means(entries, paths[-1])
    return paths


# Below this test accuracy (twice chance on 10 classes) a run did not train.
DIVERGED_ACCURACY = 0.2


def diverged(record):
    return record["accuracy"] < DIVERGED_ACCURACY


def claims(records):
    """Checks the two claims per (model, augment): lines of Markdown."""
    lines = []
    for augment in AUGMENTS:
        for model in MODELS:
            group = [
                r for r in records if (r["model"], r["augment"]) == (model, augment)
            ]
            baseline = find(group, model, "baseline", augment)
            if baseline is None or len(group) < 2:
                continue
            base = baseline["consistency_circular"]
            others = [r for r in group if r["variant"] != "baseline"]
            failed = [r["variant"] for r in others if diverged(r)]
            worse = [
                f"{r['variant']} ({100 * r['consistency_circular']:.1f}%)"
                for r in others
                if not diverged(r) and r["consistency_circular"] <= base
            ]
            if worse or failed:
                verdict = "**does not hold**: " + "; ".join(
                    ([f"not more consistent: {', '.join(worse)}"] if worse else [])
                    + (
                        [
                            f"did not train (chance accuracy, so its consistency is "
                            f"that of a near-constant predictor): {', '.join(failed)}"
                        ]
                        if failed
                        else []
                    )
                )
            else:
                verdict = "**holds**: every other variant is more consistent"
            lines.append(
                f"- {model}, {AUGMENT_TITLES[augment]}: baseline circular "
                f"consistency {100 * base:.1f}%; {verdict}."
            )
            exact = [r for r in group if r["exact"]]
            if exact:
                missed = [r for r in exact if r["consistency_circular"] < 1.0]
                values = ", ".join(
                    f"{r['variant']} {100 * r['consistency_circular']:.1f}%"
                    for r in exact
                )
                verdict = (
                    "all at 100.0%"
                    if not missed
                    else f"**not all at 100.0%** ({len(missed)} below)"
                )
                untrained = [r["variant"] for r in exact if diverged(r)]
                if untrained:
                    verdict += (
                        f", but {', '.join(untrained)} did not train, so its 100.0% "
                        "shows only that a constant output is invariant"
                    )
                lines.append(f"  Exact variants: {values}: {verdict}.")
    return lines


def _pct(record, key):
    return "n/a" if record is None else f"{100 * record[key]:.1f}"


def _agreement(agrees):
    return "agrees with" if agrees else "disagrees with"


def comparison(records):
    """The papers' numbers next to ours, and whether the orderings agree."""
    lines = []
    base = find(records, "vgg13", "baseline", "none")
    blur5 = find(records, "vgg13", "blur5", "none")
    if base and blur5:
        gain = blur5["consistency_circular"] - base["consistency_circular"]
        lines.append(
            "- Zhang's ICLR draft, CIFAR-10 VGG13 trained without augmentation, "
            "circular consistency: 88.1% baseline, 98.2% Triangle-5 (+10.1 points). "
            f"Here, VGG13 without augmentation: {_pct(base, 'consistency_circular')}%"
            f" baseline, {_pct(blur5, 'consistency_circular')}% blur5 (the binomial "
            "[1, 4, 6, 4, 1] filter, Zhang's Pascal-5; Triangle-5 is not in the "
            f"package): {100 * gain:+.1f} points, which "
            f"{_agreement(gain > 0)} the direction of the paper"
            + (
                "; the size of the gain and the absolute numbers are not comparable "
                "(other data, scale and training length)."
                if gain > 0
                else "."
            )
        )
        better = blur5["accuracy"] > base["accuracy"]
        lines.append(
            "- Zhang's draft also finds blurring raises accuracy without "
            "augmentation (91.6% baseline, 93.3% Triangle-5). Here: "
            f"{_pct(base, 'accuracy')}% baseline, {_pct(blur5, 'accuracy')}% blur5, "
            f"which {_agreement(better)} it."
        )
    augmented = find(records, "vgg13", "baseline", "shift")
    if base and augmented:
        rises = augmented["consistency_circular"] > base["consistency_circular"]
        lines.append(
            "- Zhang's draft: shift augmentation raises the baseline's consistency "
            "(88.1% to 96.6%). Here, VGG13 baseline: "
            f"{_pct(base, 'consistency_circular')}% without, "
            f"{_pct(augmented, 'consistency_circular')}% with augmentation, which "
            f"{_agreement(rises)} it."
        )
    row = {
        v: find(records, "resnet18", v, "shift")
        for v in ("baseline", "blur3", "blur5", "group", "conv3d")
    }
    if any(row.values()):
        crop = {v: r["consistency_crop"] for v, r in row.items() if r}
        text = (
            "- Shift-invariant-module paper, ResNet-18 on ImageNet (random-crop "
            "training, consistency between two crops): 83.0% baseline, 87.8% blur "
            "(Zhang's anti-aliased ResNet-18), 90.4% group, 90.2% conv3d. Here, "
            "ResNet-18 with shift augmentation, crop consistency: "
            + ", ".join(
                f"{_pct(r, 'consistency_crop')}% {v}" for v, r in row.items() if r
            )
            + "."
        )
        blurs = [crop[v] for v in ("blur3", "blur5") if v in crop]
        if "baseline" in crop and blurs and "group" in crop and "conv3d" in crop:
            ordered = crop["baseline"] < min(blurs) and max(blurs) < min(
                crop["group"], crop["conv3d"]
            )
            text += (
                " The paper's ordering baseline < blur < group, conv3d "
                f"{'holds' if ordered else 'does not hold'} here, so this "
                f"{_agreement(ordered)} the paper."
            )
        if row["baseline"] and row["group"] and row["conv3d"]:
            better = (
                min(row["group"]["accuracy"], row["conv3d"]["accuracy"])
                > row["baseline"]["accuracy"]
            )
            text += (
                " The paper's group and conv3d models are also more accurate than "
                "its baseline (68.8% and 68.6% top-1 against 65.4%); here "
                f"{_pct(row['group'], 'accuracy')}% and "
                f"{_pct(row['conv3d'], 'accuracy')}% against "
                f"{_pct(row['baseline'], 'accuracy')}%, which {_agreement(better)} it."
            )
        lines.append(text)
    return lines


def table(records):
    lines = [
        "| model | augmentation | variant | parameters | accuracy | shifted "
        "accuracy | circular consistency | crop consistency | variation | "
        "seconds |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['augment']} | {r['variant']}"
            f"{' (did not train)' if diverged(r) else ''} | "
            f"{r['parameters']:,} | {100 * r['accuracy']:.1f} | "
            f"{100 * r['shifted_accuracy']:.1f} | "
            f"{100 * r['consistency_circular']:.1f} | "
            f"{100 * r['consistency_crop']:.1f} | {r['variation']:.2e} | "
            f"{r['seconds']:.0f} |"
        )
    return lines


def table_command(mode, settings, records):
    """The command that makes the runs of `records` (options only where they are
    not the mode's defaults)."""
    words = ["python", "benchmarks/reproduce.py"] + {
        "quick": ["--quick"],
        "full": [],
    }.get(mode, ["--mode", mode])
    if settings.padding != MODES[mode].padding:
        words += ["--padding", settings.padding]
    if settings.seed != MODES[mode].seed:
        words += ["--seed", str(settings.seed)]
    for option, names, default in (
        ("--models", MODELS, MODES[mode].models),
        ("--variants", VARIANTS, MODES[mode].variants),
        ("--augment", AUGMENTS, MODES[mode].augments),
    ):
        key = option.removeprefix("--").removesuffix("s")
        used = [n for n in names if any(r[key] == n for r in records)]
        if set(used) != set(default):
            words += [option, *used]
    return shlex.join(words)


def report_markdown(mode, settings, records, plot_paths, base_dir):
    """The Markdown of one mode's results; links are relative to `base_dir`."""
    s = settings
    first = min(records, key=lambda r: r["date"])
    last = max(records, key=lambda r: r["date"])
    m = last["machine"]
    commands = sorted({r["command"] for r in records})
    # A run keeps about 2 cores busy itself: more means other jobs.
    busy = last["load_average"] > m["nproc"] + 1
    # The runs this invocation asked for and those the folder holds already.
    planned = len(
        {(m, v, a) for a in s.augments for m in s.models for v in s.variants}
        | {(r["model"], r["variant"], r["augment"]) for r in records}
    )
    lines = [
        f"### {mode} mode, {s.padding} padding, seed {s.seed} "
        f"({len(records)} of {planned} runs)",
        "",
        f"- Command: `{table_command(mode, s, records)}` (it makes these runs; they "
        f"were made by {'; '.join(f'`{c}`' for c in commands)}).",
        f"- Date: {first['date']} to {last['date']}; machine: {m['nproc']} CPUs "
        f"(`nproc`), {m['cpu']}; load average {last['load_average']} at the last "
        f"run{' (other work shared the machine)' if busy else ''}.",
        f"- Time: {sum(r['seconds'] for r in records) / 60:.0f} min for these "
        f"runs, {statistics.median(r['seconds'] for r in records):.0f} s median per "
        "run (training, evaluation and building and tracing the Keras models).",
        f"- Training: Fashion-MNIST padded to 32x32, {s.train_subset or 'all'} "
        f"training images, {s.epochs} epoch(s), batch {s.batch_size}, SGD momentum "
        f"0.9, one triangular learning-rate cycle peaking at {s.lr}, weight decay "
        f"5e-5, seed {s.seed}, width multiplier {s.width_multiplier:g}, {s.padding} "
        "padding in every conv, pool and blur; the model of the epoch with the best "
        "validation accuracy.",
        f"- Test: {s.test_images} test images for accuracy and consistency "
        f"({s.samples} random shift pair(s) per image, dy and dx in [0, "
        f"{s.max_shift}) px; 'shifted accuracy' under random circular shifts; "
        "'crop' shifts fill from the reflected image), variation (variance of "
        "P(correct class) over all shifts in "
        f"[0, {s.max_shift})^2) on {s.detail_images} images. Percentages.",
        "",
        *table(records),
        "",
        "Claims:",
        "",
        *claims(records),
        "",
        "Against the papers:",
        "",
        *(
            comparison(records)
            or ["- (needs VGG13 without or ResNet-18 with shift augmentation)"]
        ),
        "",
    ]
    for path in plot_paths:
        rel = os.path.relpath(path, base_dir)
        lines.append(f"![{os.path.splitext(os.path.basename(path))[0]}]({rel})")
    return "\n".join(lines) + "\n"


INTRO = """## Reproduction of the papers at small scale (benchmarks/reproduce.py)

The claims of the seed papers, measured with this package on Fashion-MNIST (zero-padded
to 32x32) instead of CIFAR-10 (Zhang's ICLR draft) and ImageNet (the
shift-invariant-module paper), with models a fraction of the papers' width trained for a
few epochs on 2 CPU cores instead of 150 epochs (CIFAR-10) or 16 epochs (ImageNet) on
GPUs. Absolute numbers therefore differ from the papers'; what can be compared is the
ordering of the variants under the same training, and even that only roughly: with
such short training, differences of a few points between variants are within the
run-to-run noise. The tables of one seed do not show that noise; the "over seeds"
table does, for the runs repeated under other seeds. As in Zhang's draft,
every model pads circularly (conv, pool, blur), so that under a circular shift only the
subsampling can break invariance. Shift augmentation is the training pipeline's
crop_flip (random 32x32 crop of the image zero-padded by 4 px, and a horizontal flip),
as in Zhang's CIFAR-10 training. Variants: blurN is MaxBlurPool/BlurPool with the
N-tap binomial filter; group and conv3d are ShiftInvariantDown (learned, fixed
polyphase order); aps is adaptive polyphase sampling; group-aps and conv3d-aps are
ShiftInvariantDown with polyphase_order="aps". aps, group-aps and conv3d-aps are
exactly invariant to circular shifts; crop shifts bring new content in at the border,
so their crop consistency can be below 100%. Each table says which mode made it and the
command that reproduces it.
"""


def replace_section(text, name, body):
    """`text` with the part between `<!-- name:start -->` and `<!-- name:end -->`
    replaced by `body` (appended, with its markers, when there is none yet)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text.split(start, 1)[1]:
        before, rest = text.split(start, 1)
        return before + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def section(text, name):
    """The body of the section `name` of `text`, or None."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def update_benchmarks(text, mode, body):
    """BENCHMARKS.md `text` with `body` as the subsection `mode` (a `label`)
    inside the `reproduce` section; the other subsections and sections stay."""
    inner = replace_section(section(text, SECTION) or "", f"{SECTION}-intro", INTRO)
    return replace_section(
        text, SECTION, replace_section(inner, f"{SECTION}-{mode}", body)
    )


def write_benchmarks(path, name, body):
    """Puts `body` into the Markdown file `path` (created if missing) as the
    subsection `name` of the `reproduce` section (see `update_benchmarks`)."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    with open(path, "w") as f:
        f.write(update_benchmarks(text, name, body))


def seed_folders(mode, settings, out_dir):
    """{seed: folder} of the results of `mode` and `settings.padding` under every
    seed, found beside `out_dir` by their `label`s; empty when `out_dir` is not
    named by its label (a custom `--out`)."""
    if os.path.basename(os.path.normpath(out_dir)) != label(mode, settings):
        return {}
    default = MODES[mode].seed
    base = label(mode, dataclasses.replace(settings, seed=default))
    root = os.path.dirname(os.path.normpath(out_dir))
    folders = {}
    for name in os.listdir(root):
        match = re.fullmatch(re.escape(base) + r"(?:-seed(\d+))?", name)
        if match and os.path.isdir(os.path.join(root, name, "records")):
            seed = int(match.group(1)) if match.group(1) else default
            folders[seed] = os.path.join(root, name)
    return dict(sorted(folders.items()))


def _mean_sd(values, sign=""):
    values = [100 * v for v in values]
    return f"{statistics.mean(values):{sign}.1f} ± {statistics.stdev(values):.1f}"


def across_seeds(records_by_seed):
    """One row per (augment, model, variant) run under two seeds or more, with
    its records by seed and, but for the baseline, its gains in circular
    consistency over the baseline of the same seed."""
    keys = {
        (r["augment"], r["model"], r["variant"]): r
        for records in records_by_seed.values()
        for r in records
    }
    rows = []
    for augment, model, variant in sorted(keys, key=lambda k: _plan_order(keys[k])):
        runs = {
            seed: run
            for seed, records in records_by_seed.items()
            if (run := find(records, model, variant, augment))
        }
        if len(runs) < 2:
            continue
        gains, crop_gains = {}, {}
        if variant != "baseline":
            for seed, run in runs.items():
                base = find(records_by_seed[seed], model, "baseline", augment)
                if base is not None:
                    gains[seed] = (
                        run["consistency_circular"] - base["consistency_circular"]
                    )
                    crop_gains[seed] = (
                        run["consistency_crop"] - base["consistency_crop"]
                    )
        rows.append(
            {
                "model": model,
                "variant": variant,
                "augment": augment,
                "runs": runs,
                "gains": gains,
                "crop_gains": crop_gains,
            }
        )
    return rows


def seeds_table(rows):
    lines = [
        "| model | augmentation | variant | seeds | accuracy | circular consistency "
        "| lowest, highest | crop consistency | circular consistency minus the "
        "baseline's (points) | above the baseline |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        runs = list(row["runs"].values())
        circular = [r["consistency_circular"] for r in runs]
        gains = list(row["gains"].values())
        above = sum(g > 0 for g in gains)
        lines.append(
            f"| {row['model']} | {row['augment']} | {row['variant']} | "
            f"{', '.join(map(str, row['runs']))} | "
            f"{_mean_sd([r['accuracy'] for r in runs])} | {_mean_sd(circular)} | "
            f"{100 * min(circular):.1f}, {100 * max(circular):.1f} | "
            f"{_mean_sd([r['consistency_crop'] for r in runs])} | "
            + (
                f"{_mean_sd(gains, sign='+')} | {above} of {len(gains)} |"
                if len(gains) >= 2
                else "| |"
            )
        )
    return lines


def _known(runs, key):
    """The values of `key` in every run, or None if a run lacks it (a record
    from before the key was measured)."""
    values = [run.get(key) for run in runs]
    return None if any(v is None for v in values) else values


def _mean_sd_plain(values, digits=3):
    return (
        f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    )


def diagnostics_table(rows):
    """Crop consistencies, their gain, and what the downsampling layers learned
    (`keras_shiftinv.diagnostics`): rows whose runs all have the diagnostics."""
    lines = [
        "| model | augmentation | variant | symmetric crop consistency | crop "
        "consistency minus the baseline's (points) | high-frequency share, "
        "trained | at start | weight change of the modules |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    found = False
    for row in rows:
        runs = list(row["runs"].values())
        summaries = _known(runs, "downsampling_summary")
        symmetric = _known(runs, "consistency_crop_symmetric")
        if summaries is None or symmetric is None:
            continue
        found = True

        def mean_of(group, key, summaries=summaries):
            values = [s[group][key] for s in summaries]
            return "-" if None in values else _mean_sd_plain(values)

        crop_gains = list(row["crop_gains"].values())
        lines.append(
            f"| {row['model']} | {row['augment']} | {row['variant']} | "
            f"{_mean_sd(symmetric)} | "
            f"{_mean_sd(crop_gains, sign='+') if len(crop_gains) >= 2 else ''} | "
            f"{mean_of('all', 'high_frequency_share')} | "
            f"{mean_of('all', 'initial_high_frequency_share')} | "
            f"{mean_of('learned', 'weight_change')} |"
        )
    return lines if found else []


def plot_diagnostics(rows, path):
    """Per variant: the mean high-frequency share of its downsampling layers at
    the start and after training, against its circular consistency (mean and
    seeds): did the layers low-pass, and did that buy consistency?"""
    rows = [r for r in rows if _known(r["runs"].values(), "downsampling_summary")]
    if not rows:
        return None
    figure = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    names = [r["variant"] for r in rows]
    positions = range(len(rows))
    for offset, key, alpha, title in (
        (-0.2, "initial_high_frequency_share", 0.4, "at start"),
        (0.2, "high_frequency_share", 1.0, "trained"),
    ):
        means = [
            statistics.mean(
                run["downsampling_summary"]["all"][key] for run in r["runs"].values()
            )
            for r in rows
        ]
        left.bar([p + offset for p in positions], means, 0.4, alpha=alpha, label=title)
    left.axhline(diagnostics.reference_share(), color="black", ls="--", lw=1)
    left.axhline(0.75, color="gray", ls=":", lw=1)
    left.set_xticks(list(positions), names, rotation=40, ha="right", fontsize=7)
    left.set_ylabel("high-frequency share (mean over layers)")
    left.set_title("dashed: BlurPool2D(4); dotted: no filter", fontsize=8)
    left.legend(fontsize=8)
    for k, r in enumerate(rows):
        runs = list(r["runs"].values())
        shares = [
            run["downsampling_summary"]["all"]["high_frequency_share"] for run in runs
        ]
        circular = [100 * run["consistency_circular"] for run in runs]
        right.scatter(shares, circular, color=f"C{k % 10}", s=18, alpha=0.6)
        right.scatter(
            statistics.mean(shares),
            statistics.mean(circular),
            color=f"C{k % 10}",
            marker="D",
            s=50,
            edgecolors="black",
            label=r["variant"],
        )
    right.set_xlabel("high-frequency share after training (mean over layers)")
    right.set_ylabel("circular shift consistency (%)")
    right.grid(alpha=0.3)
    right.legend(fontsize=6, ncol=2)
    figure.savefig(path, dpi=110)
    return path


# The seed paper's claims (Table 1: ResNet-18 on ImageNet), as (what, the
# record key compared, the reference variant, the paper's numbers).
PAPER_CLAIMS = (
    (
        "more consistent than the baseline ResNet-18",
        "consistency_crop_symmetric",
        "baseline",
        "90.42 (group) and 90.20 (conv3d) against 83.01",
    ),
    (
        "more consistent than anti-aliasing with a fixed blur (AACNN)",
        "consistency_crop_symmetric",
        "blur4",
        "90.42 and 90.20 against 87.83",
    ),
    (
        "more accurate than the baseline ResNet-18",
        "accuracy",
        "baseline",
        "68.78 and 68.56 against 65.36 top-1",
    ),
)


def verdict(differences):
    """'holds' when the variant beats the reference in every seed, 'does not
    hold' when it does not beat it on average, otherwise 'not settled'."""
    if min(differences) > 0:
        return "holds"
    if statistics.mean(differences) <= 0:
        return "does not hold"
    return "not settled"


def paper_verdicts(records_by_seed, model="resnet18", augment="shift"):
    """Lines of Markdown: for each claim of the seed paper and each module
    variant run under two seeds or more, the per-seed difference to the
    reference run of the same seed and the verdict (see `verdict`)."""
    lines = [
        "| claim (paper's numbers) | variant | difference per seed (points) | "
        "mean | verdict |",
        "| --- | --- | --- | ---: | --- |",
    ]
    variants = [
        v
        for v in VARIANTS
        if VARIANTS[v]["variant"] in ("group", "conv3d")
        and VARIANTS[v].get("polyphase_order", "fixed") == "fixed"
    ]
    for claim, key, reference, paper in PAPER_CLAIMS:
        for variant in variants:
            differences = {}
            for seed, records in records_by_seed.items():
                run = find(records, model, variant, augment)
                base = find(records, model, reference, augment)
                if run and base and None not in (run.get(key), base.get(key)):
                    differences[seed] = 100 * (run[key] - base[key])
            if len(differences) < 2:
                continue
            values = list(differences.values())
            lines.append(
                f"| {claim} ({paper}) | {variant} | "
                + ", ".join(f"{v:+.1f}" for v in values)
                + f" | {statistics.mean(values):+.1f} | {verdict(values)} |"
            )
    return lines if len(lines) > 2 else []


def seeds_claims(rows):
    """The claim 'more consistent than the baseline' over seeds, per (model,
    augment): lines of Markdown."""
    lines = []
    for augment in AUGMENTS:
        for model in MODELS:
            group = [
                r
                for r in rows
                if (r["model"], r["augment"]) == (model, augment) and r["gains"]
            ]
            if not group:
                continue
            always = [r["variant"] for r in group if min(r["gains"].values()) > 0]
            not_always = [
                f"{r['variant']} ({sum(g > 0 for g in r['gains'].values())} of "
                f"{len(r['gains'])})"
                for r in group
                if min(r["gains"].values()) <= 0
            ]
            parts = []
            if always:
                parts.append(f"in every seed: {', '.join(always)}")
            if not_always:
                parts.append(f"**not in every seed**: {', '.join(not_always)}")
            lines.append(
                f"- {model}, {AUGMENT_TITLES[augment]}, more consistent than the "
                f"baseline {'; '.join(parts)}."
            )
    return lines


def plot_seeds(rows, path):
    """Circular consistency of every run, one panel per (model, augment), one
    line per seed across the variants: the spread over seeds next to the gaps
    between variants."""
    panels = list(dict.fromkeys((r["model"], r["augment"]) for r in rows))
    figure = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    seeds = sorted({seed for r in rows for seed in r["runs"]})
    for ax, (model, augment) in zip(axes, panels, strict=True):
        group = [r for r in rows if (r["model"], r["augment"]) == (model, augment)]
        names = [r["variant"] for r in group]
        for k, seed in enumerate(seeds):
            points = [
                (x, 100 * r["runs"][seed]["consistency_circular"])
                for x, r in enumerate(group)
                if seed in r["runs"]
            ]
            ax.plot(
                *zip(*points, strict=True),
                marker="o",
                color=f"C{k}",
                alpha=0.8,
                label=f"seed {seed}",
            )
        means = [
            statistics.mean(
                100 * run["consistency_circular"] for run in r["runs"].values()
            )
            for r in group
        ]
        ax.scatter(range(len(group)), means, marker="_", s=400, color="black")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_title(f"{model}, train {AUGMENT_TITLES[augment]}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("circular shift consistency (%); bar: mean")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def seeds_report(mode, settings, out_dir, benchmarks=None):
    """When the results of `mode` exist under two seeds or more: the across-seed
    table, its plot and JSON in `<label>-seeds/`, and its BENCHMARKS.md
    subsection."""
    folders = seed_folders(mode, settings, out_dir)
    rows = across_seeds({seed: read_records(f) for seed, f in folders.items()})
    if not rows:
        return
    default = dataclasses.replace(settings, seed=MODES[mode].seed)
    name = f"{label(mode, default)}-seeds"
    folder = os.path.join(os.path.dirname(os.path.normpath(out_dir)), name)
    os.makedirs(folder, exist_ok=True)
    _write_json(
        os.path.join(folder, "seeds.json"),
        [
            {
                **{
                    k: row[k]
                    for k in ("model", "variant", "augment", "gains", "crop_gains")
                },
                "runs": {
                    seed: {
                        k: run[k]
                        for k in (
                            "accuracy",
                            "consistency_circular",
                            "consistency_crop",
                            "consistency_crop_symmetric",
                            "downsampling_summary",
                        )
                        if k in run
                    }
                    for seed, run in row["runs"].items()
                },
            }
            for row in rows
        ],
    )
    plot = os.path.join(folder, "consistency_seeds.png")
    plot_seeds(rows, plot)
    diagnostics_plot = plot_diagnostics(rows, os.path.join(folder, "diagnostics.png"))
    learned = diagnostics_table(rows)
    claims_of_paper = paper_verdicts(
        {seed: read_records(f) for seed, f in folders.items()}
    )
    seeds = sorted({seed for row in rows for seed in row["runs"]})
    runs = [run for row in rows for run in row["runs"].values()]
    command = table_command(mode, default, runs).replace(
        "benchmarks/reproduce.py", "benchmarks/reproduce.py --seed $seed", 1
    )

    def body(base_dir):
        return "\n".join(
            [
                f"### {mode} mode, {settings.padding} padding, over seeds "
                f"{', '.join(map(str, seeds))}",
                "",
                f"- Command: `for seed in {' '.join(map(str, seeds))}; do "
                f"{command}; done` (the runs made under two seeds or more, read "
                "from the folders of each seed; the tables above give their "
                "dates, machine and settings).",
                "- Mean ± standard deviation over the seeds, in percent. The gain "
                "over the baseline is taken seed by seed (same seed, same data "
                "order and shifts).",
                "",
                *seeds_table(rows),
                "",
                "Claim 'every anti-aliased variant is more consistent than the "
                "baseline', seed by seed:",
                "",
                *seeds_claims(rows),
                "",
                f"![consistency_seeds]({os.path.relpath(plot, base_dir)})",
                "",
                *(
                    [
                        "What the downsampling layers learned "
                        "(`keras_shiftinv.diagnostics`; mean ± sd over the seeds of "
                        "the mean over a model's downsampling layers). "
                        "High-frequency share: the energy of a layer's effective "
                        "stride-2 filter outside |w| < pi/2 on both axes "
                        f"(BlurPool2D(4): {diagnostics.reference_share():.3f}, "
                        "plain subsampling: 0.750). Weight change: "
                        "||w - w0|| / ||w0|| of the ShiftInvariantDown modules. "
                        "Symmetric crop: both windows anywhere within the maximal "
                        "shift of the centre.",
                        "",
                        *learned,
                        "",
                        "![diagnostics]("
                        f"{os.path.relpath(diagnostics_plot, base_dir)})",
                        "",
                    ]
                    if learned and diagnostics_plot
                    else []
                ),
                *(
                    [
                        "The seed paper's claims (its Table 1 measures consistency "
                        "with random crops; here the symmetric crop consistency), "
                        "ResNet-18 "
                        "trained with shift augmentation, seed by seed against the "
                        "reference run of the same seed. Verdict: holds when the "
                        "variant is ahead in every seed, does not hold when it is "
                        "not ahead on average, not settled otherwise.",
                        "",
                        *claims_of_paper,
                        "",
                    ]
                    if claims_of_paper
                    else []
                ),
            ]
        )

    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write(body(folder))
    if benchmarks:
        write_benchmarks(benchmarks, name, body(os.path.dirname(benchmarks)))


def report(mode, settings, out_dir, benchmarks=None, data_dir=None):
    """Rewrites results.json, the plots, report.md and the BENCHMARKS.md section."""
    records = read_records(out_dir)
    _write_json(os.path.join(out_dir, "results.json"), records)
    plot_paths = make_plots(records, settings, out_dir, data_dir)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report_markdown(mode, settings, records, plot_paths, out_dir))
    if benchmarks:
        body = report_markdown(
            mode, settings, records, plot_paths, os.path.dirname(benchmarks)
        )
        write_benchmarks(benchmarks, label(mode, settings), body)
    seeds_report(mode, settings, out_dir, benchmarks)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="the quick mode (16 runs, about 7 minutes)"
    )
    parser.add_argument(
        "--mode",
        choices=list(MODES),
        help="quick, full (default) or decisive (ResNet-18, 2,376 steps per run)",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        help="default: all in the full mode; baseline blur5 group group-aps in quick",
    )
    parser.add_argument("--augment", nargs="+", choices=list(AUGMENTS))
    parser.add_argument(
        "--padding",
        choices=PADDINGS,
        default="circular",
        help="padding of every model (results of 'zero' go to MODE-zero)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every run (results of other seeds go to MODE-seedN)",
    )
    parser.add_argument(
        "--out", help="output folder (default benchmarks/results/MODE[-zero][-seedN])"
    )
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: system)")
    parser.add_argument(
        "--benchmarks",
        default=os.path.join(ROOT, "BENCHMARKS.md"),
        help="Markdown file whose reproduce section is updated ('' for none)",
    )
    parser.add_argument(
        "--commit",
        action="store_true",
        help="git-commit the results (and BENCHMARKS.md) after each run",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1 if sys.stdout.isatty() else 2,
        help="Keras verbosity (1: progress bars, 2: a line per epoch)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    mode = args.mode or ("quick" if args.quick else "full")
    plan = {
        key: tuple(value)
        for key, value in (
            ("models", args.models),
            ("variants", args.variants),
            ("augments", args.augment),
        )
        if value
    }
    settings = dataclasses.replace(
        MODES[mode], padding=args.padding, seed=args.seed, **plan
    )
    out_dir = args.out or os.path.join(
        ROOT, "benchmarks", "results", label(mode, settings)
    )
    start = time.perf_counter()
    records = run(
        mode,
        settings,
        out_dir,
        data_dir=args.data_dir,
        benchmarks=args.benchmarks or None,
        verbose=args.verbose,
        commit=args.commit,
    )
    print(
        f"{len(records)} runs in {out_dir} ({time.perf_counter() - start:.0f} s); "
        f"report: {os.path.join(out_dir, 'report.md')}"
    )


if __name__ == "__main__":
    main()
