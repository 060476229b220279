"""The parts of benchmarks/reproduce.py, each importing only those listed before it:

    measure   the test data and the measurement of one trained model
    plan      the variants, modes and settings, the run loop, the records
    report    one seed's plots, tables, claims, report.md and BENCHMARKS.md part
    seeds     the results across seeds: tables, verdicts, plots and report

They import the package as installed (`pip install -e .`) and need the benchmarks
folder (markdown_sections) on sys.path, which reproduce.py and evidence.py put there.
"""
