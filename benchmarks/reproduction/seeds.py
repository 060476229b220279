"""The results of a mode under several seeds: the across-seeds table and plots,
what the downsampling layers learned, the verdicts on the seed paper's claims, and
their report (`<label>-seeds/`, BENCHMARKS.md subsection)."""

import dataclasses
import os
import re
import statistics

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_shiftinv import diagnostics

from .plan import (
    AUGMENT_TITLES,
    AUGMENTS,
    MODELS,
    MODES,
    VARIANTS,
    find,
    label,
    plan_order,
    read_records,
    write_json,
)
from .report import table_command, write_benchmarks


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
    for augment, model, variant in sorted(keys, key=lambda k: plan_order(keys[k])):
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
    write_json(
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
