"""The evidence protocol of BENCHMARKS.md ("Evidence protocol"): train its runs,
or recompute its report from the committed per-run files.

    python benchmarks/evidence.py run --jobs 2 --commit   # trains what is missing
    python benchmarks/evidence.py report                  # tables, plot, BENCHMARKS.md
    python benchmarks/evidence.py sweep --commit          # issue 22's validation sweep

`run` is resumable: a run with a record is skipped, and a training folder
(benchmarks/results/evidence/train/, not committed) continues where it stopped.
Start it from a `git worktree` at a fixed commit, under `nice`: every record keeps
the commit of the code that made it. `report` loads no model and trains nothing.
The code is in benchmarks/reproduction/ (evidence, evidence_report, statistics).
"""

import argparse
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import markdown_sections  # noqa: E402
from reproduction import evidence, evidence_report, plan  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
# The folder and BENCHMARKS.md section of each command's results.
OUT = {
    "run": os.path.join(RESULTS, "evidence"),
    "report": os.path.join(RESULTS, "evidence"),
    "sweep": os.path.join(RESULTS, "evidence-sweep"),
}
SECTION = {"report": "evidence-results", "sweep": "evidence-sweep"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=tuple(OUT))
    parser.add_argument(
        "--out", help="results folder (default benchmarks/results/evidence[-sweep])"
    )
    parser.add_argument(
        "--variants", nargs="+", help="only these variants (default: all planned)"
    )
    parser.add_argument("--augment", nargs="+", choices=("shift", "none"))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: system)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once (one per core)"
    )
    parser.add_argument(
        "--commit",
        action="store_true",
        help="git-commit each run's folder as it finishes",
    )
    parser.add_argument(
        "--benchmarks",
        default=os.path.join(ROOT, "BENCHMARKS.md"),
        help="Markdown file whose evidence-results section `report` writes ('' none)",
    )
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    parser.add_argument("--claims", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def selected_runs(args):
    runs = evidence.SWEEP if args.command == "sweep" else evidence.RUNS
    return [
        (variant, augment, seed)
        for variant, augment, seed in evidence.planned_runs(runs)
        if (args.variants is None or variant in args.variants)
        and (args.augment is None or augment in args.augment)
        and (args.seeds is None or seed in args.seeds)
    ]


def commit_run(out_dir, name):
    folder = os.path.join(out_dir, "runs", name)
    subprocess.run(["git", "-C", out_dir, "add", "--", folder], check=True)
    staged = subprocess.run(["git", "-C", out_dir, "diff", "--cached", "--quiet"])
    if staged.returncode:
        subprocess.run(
            ["git", "-C", out_dir, "commit", "-q", "-m", f"evidence: {name}"],
            check=True,
        )


def report(out_dir, benchmarks):
    """Writes report.md and evidence.png in `out_dir`, and the BENCHMARKS.md
    section (links relative to each file)."""
    image = os.path.join(out_dir, "evidence.png")
    body, tables = evidence_report.report_markdown(out_dir, "evidence.png")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(body)
    if any(rows for _, rows in tables):
        evidence_report.plot(tables, image)
    if benchmarks:
        relative = os.path.relpath(image, os.path.dirname(os.path.abspath(benchmarks)))
        body, _ = evidence_report.report_markdown(out_dir, relative)
        markdown_sections.write_section(benchmarks, SECTION["report"], body)
    return body


def sweep_report(out_dir, benchmarks):
    """Writes the sweep's table and choice to report.md in `out_dir` and to its
    BENCHMARKS.md section."""
    body = evidence_report.sweep_markdown(out_dir)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(body)
    if benchmarks:
        markdown_sections.write_section(benchmarks, SECTION["sweep"], body)
    return body


def main(argv=None):
    args = parse_args(argv)
    args.out = args.out or OUT[args.command]
    os.makedirs(args.out, exist_ok=True)
    benchmarks = args.benchmarks or None
    if args.command == "report":
        print(report(args.out, benchmarks))
        return
    runs = selected_runs(args)
    split = "validation" if args.command == "sweep" else "test"
    if args.claims:
        import tensorflow as tf

        threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        evidence.run_all(
            args.out, runs, split, args.claims, args.data_dir, args.verbose
        )
        return
    left = [r for r in runs if evidence.run_name(*r) not in evidence.finished(args.out)]
    print(f"{len(runs) - len(left)} of {len(runs)} runs done; {len(left)} to go")
    jobs = min(args.jobs, len(left))
    if jobs:
        run_processes(args, argv, jobs)
    if args.command == "sweep":
        print(sweep_report(args.out, benchmarks))


def run_processes(args, argv, jobs):
    """Trains the selected runs in `jobs` processes, committing each finished run
    with `--commit`."""

    def on_record(name):
        print(f"finished: {name}", flush=True)
        if args.commit:
            commit_run(args.out, name)

    command = [sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:])]
    print("command:", shlex.join(command), flush=True)
    plan.run_processes(
        command + ["--jobs", str(jobs)],
        jobs,
        args.out,
        on_record=on_record,
        finished=evidence.finished,
    )


if __name__ == "__main__":
    main()
