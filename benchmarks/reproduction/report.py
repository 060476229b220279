"""The report of one seed's results: the plots, the table, the claims, the
comparison with the papers, report.md and the BENCHMARKS.md subsection."""

import json
import os
import shlex
import statistics

import markdown_sections

from keras_shiftinv.app import evaluate, plots
from keras_shiftinv.app.run_folder import RunFolder
from keras_shiftinv.models import load_model

from . import measure
from .plan import (
    AUGMENT_TITLES,
    AUGMENTS,
    MODELS,
    MODES,
    VARIANTS,
    find,
    label,
    read_records,
    write_json,
)


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
            images = measure.test_images(
                settings.equivariance_images, settings.batch_size, data_dir
            )
            model_path = RunFolder(record["train_config"]["out"]).best_model
            layers = evaluate.layer_equivariance(
                load_model(model_path),
                images,
                max_shift=settings.equivariance_shift,
                batch_size=settings.batch_size,
            )
            write_json(path, {"name": record["name"], "equivariance": layers})
        with open(path) as f:
            entries.append(json.load(f))
    return entries


def plot_consistency_accuracy(records, path):
    """Zhang's Figure 5: consistency against accuracy, one panel per augmentation
    setting, one colour per variant, one marker per model (`keras_shiftinv.app.plots`);
    the exact runs have a black edge."""
    colours = {v: f"C{i % 10}" for i, v in enumerate(VARIANTS)}
    markers = dict(zip(MODELS, "os", strict=True))
    entries = [
        {
            "name": r["variant"],
            "accuracy": r["accuracy"],
            "consistency": r["consistency_circular"],
            "panel": r["augment"],
            "color": colours[r["variant"]],
            "marker": markers.get(r["model"], "^"),
            "edgecolor": "black" if r["exact"] else "none",
        }
        for r in records
    ]
    plots.plot_consistency_accuracy(
        entries,
        path,
        panels={
            a: f"train {AUGMENT_TITLES[a]}"
            for a in AUGMENTS
            if any(r["augment"] == a for r in records)
        },
        legend={
            model: marker
            for model, marker in markers.items()
            if any(r["model"] == model for r in records)
        },
        percent=True,
        xlabel="test accuracy, unshifted (%)",
        ylabel="circular shift consistency (%)",
        size=(5.5, 4.5),
        point_size=45,
        font_size=6,
        margins=0.15,
        dpi=110,
    )


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


# The section of BENCHMARKS.md that holds a subsection per `label`.
SECTION = "reproduce"
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


def write_benchmarks(path, name, body):
    """Puts `body` into the Markdown file `path` (created if missing) as the
    subsection `name` (a `label`) of the `reproduce` section, after the intro;
    the other subsections and sections stay."""
    markdown_sections.write_section(path, name, body, parent=SECTION, intro=INTRO)


def report(mode, settings, out_dir, benchmarks=None, data_dir=None):
    """Rewrites results.json, the plots, report.md and the BENCHMARKS.md section."""
    records = read_records(out_dir)
    write_json(os.path.join(out_dir, "results.json"), records)
    plot_paths = make_plots(records, settings, out_dir, data_dir)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report_markdown(mode, settings, records, plot_paths, out_dir))
    if benchmarks:
        body = report_markdown(
            mode, settings, records, plot_paths, os.path.dirname(benchmarks)
        )
        write_benchmarks(benchmarks, label(mode, settings), body)
