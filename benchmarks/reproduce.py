"""Reproduce the seed papers' shift-invariance results at small scale.

On Fashion-MNIST (zero-padded to 32x32), trains VGG13 and ResNet-18 (CIFAR stem) in
the variants baseline; blur with filters of 2, 3, 5 and 7 taps; group and conv3d
(`ShiftInvariantDown`); and the exact ones, aps and group / conv3d with
polyphase_order="aps" ("group-aps", "conv3d-aps"). As in Zhang's ICLR draft ("in all
our experiments, we use circular shifting and convolution"), every conv, pool and blur
pads circularly (`--padding zero` makes the same runs with zero padding). Each model
is trained without and with shift augmentation (random crop of the image padded by 4
px, and flip), as Table 1 of that draft does. Every run has the same seed, schedule
and epochs (`keras_shiftinv.app.training.train`). Then, for each run, on the test split:
accuracy without shifts and under random circular shifts, circular and crop shift
consistency, classification variation and the diagonal stability curve
(`keras_shiftinv.app.metrics`).

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

    python benchmarks/reproduce.py --quick       # 16 runs, 4.5 minutes on 2 CPUs
    python benchmarks/reproduce.py               # full mode: 40 runs, about 45 minutes
    for seed in 1 2; do python benchmarks/reproduce.py --seed $seed \\
        --variants baseline blur5 group conv3d --augment none; done
    python benchmarks/reproduce.py --quick --models vgg13 --variants baseline blur5 \\
        --augment none

The code is in benchmarks/reproduction/ (measure, plan, report, seeds); the sections
of BENCHMARKS.md are written by benchmarks/markdown_sections.py.
"""

import argparse
import dataclasses
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The shared modules of the benchmarks folder (there when this file runs as a
# script, not when it is loaded by path, as the tests do). The package is imported
# as installed (`pip install -e .`).
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import tensorflow as tf  # noqa: E402
from reproduction import plan, report, seeds  # noqa: E402
from reproduction.plan import AUGMENTS, MODELS, MODES, PADDINGS, VARIANTS  # noqa: E402

# The default of --jobs stops here: every process holds a TensorFlow runtime and
# its data (about 1.5 GB).
MAX_JOBS = 8
# How many arguments --jobs appends to the command of each process it starts:
# "--jobs N --verbose V" here, "--claims FOLDER" in `plan.run_processes`.
APPENDED_ARGUMENTS = 6


def write_reports(mode, settings, out_dir, benchmarks=None, data_dir=None):
    """Rewrites results.json, the plots, report.md and the BENCHMARKS.md section of
    `out_dir`, then the across-seeds report (`plan.run` calls it after each run)."""
    report.report(mode, settings, out_dir, benchmarks, data_dir)
    seeds.seeds_report(mode, settings, out_dir, benchmarks)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the quick mode (16 runs, 4.5 minutes on 2 CPUs)",
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
        "--jobs",
        type=int,
        help="runs trained at once, each in its own process with an equal share of "
        f"the CPUs (default: one more than the CPUs, at most {MAX_JOBS} and at most "
        "the runs left; 1: in this process)",
    )
    # The claims folder of the processes started by --jobs (`plan.run_processes`).
    parser.add_argument("--claims", help=argparse.SUPPRESS)
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
    chosen = {
        key: tuple(value)
        for key, value in (
            ("models", args.models),
            ("variants", args.variants),
            ("augments", args.augment),
        )
        if value
    }
    settings = dataclasses.replace(
        MODES[mode], padding=args.padding, seed=args.seed, **chosen
    )
    out_dir = args.out or os.path.join(
        ROOT, "benchmarks", "results", plan.label(mode, settings)
    )
    options = {"data_dir": args.data_dir, "verbose": args.verbose}
    if args.claims:
        threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        # The record keeps the command as it was typed.
        typed = (argv or sys.argv[1:])[:-APPENDED_ARGUMENTS]
        command = shlex.join(["python", "benchmarks/reproduce.py", *typed])
        plan.run(
            mode, settings, out_dir, claims=args.claims, command=command, **options
        )
        return
    start = time.perf_counter()
    benchmarks = args.benchmarks or None
    left = len(plan.pending(settings, out_dir))
    # Part of a run is single-threaded Python and file I/O: one process more than
    # CPUs keeps them busy (quick mode on 2 CPUs: 300 s with 2 processes, 266 s
    # with 3).
    jobs = min(args.jobs or min(len(os.sched_getaffinity(0)) + 1, MAX_JOBS), left)
    if jobs > 1:

        def on_record(name):
            records = plan.read_records(out_dir)
            if not args.commit:
                # The per-layer equivariance as soon as its runs exist (cached),
                # while the last runs train, rather than after them.
                report.equivariance_entries(records, settings, out_dir, args.data_dir)
                return
            write_reports(mode, settings, out_dir, benchmarks, args.data_dir)
            plan.commit_results(
                out_dir, benchmarks, f"reproduce {plan.label(mode, settings)}: {name}"
            )

        command = [
            sys.executable,
            os.path.abspath(__file__),
            *(argv or sys.argv[1:]),
            "--jobs",
            str(jobs),
            # Progress bars of several processes would overwrite each other.
            "--verbose",
            str(min(args.verbose, 2) and 2),
        ]
        plan.run_processes(command, jobs, out_dir, on_record=on_record)
    records = plan.run(
        mode,
        settings,
        out_dir,
        benchmarks=benchmarks,
        commit=args.commit,
        report=write_reports,
        **options,
    )
    print(
        f"{len(records)} runs in {out_dir} ({time.perf_counter() - start:.0f} s); "
        f"report: {os.path.join(out_dir, 'report.md')}"
    )


if __name__ == "__main__":
    main()
