"""Training throughput and inference latency of zoo models on this machine's CPU.

For each model and input configuration, builds the model in every variant, then
times `train_on_batch` and `predict_on_batch` (graph mode, no XLA: XLA is slower on
TensorFlow's CPU), visiting the variants round robin so that a change of machine load
hits all of them alike. Reports medians, and each variant's step time relative to
"baseline". With --write, replaces the `bench_models` section of BENCHMARKS.md.

    python benchmarks/bench_models.py          # resnet18 and vgg13, all variants
    python benchmarks/bench_models.py --models resnet18 --configs cifar --steps 3
"""

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import zoo  # noqa: E402

# name: (input size, batch size, builder options)
CONFIGS = {
    "imagenet": (224, 16, {}),
    "cifar": (32, 128, {"stem": "cifar"}),
}
START, END = "<!-- bench_models:start -->", "<!-- bench_models:end -->"


def build(name, variant, size, options, num_classes):
    if not name.startswith("resnet"):
        options = {k: v for k, v in options.items() if k != "stem"}
    model = zoo.create_model(
        name,
        variant=variant,
        num_classes=num_classes,
        input_shape=(size, size, 3),
        **options,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    return model


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name, config, variants, steps, warmup, num_classes):
    size, batch, options = CONFIGS[config]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, num_classes, batch)
    models = {v: build(name, v, size, options, num_classes) for v in variants}
    train = {v: [] for v in variants}
    infer = {v: [] for v in variants}
    for step in range(warmup + steps):
        for variant, model in models.items():
            t_train = timed(lambda m=model: m.train_on_batch(x, y))
            t_infer = timed(lambda m=model: m.predict_on_batch(x))
            if step >= warmup:
                train[variant].append(t_train)
                infer[variant].append(t_infer)
        print(f"  {name} {config}: step {step + 1}/{warmup + steps}", flush=True)
    rows = []
    base = statistics.median(train[variants[0]])
    for variant in variants:
        t = statistics.median(train[variant])
        i = statistics.median(infer[variant])
        params = sum(int(np.prod(w.shape)) for w in models[variant].trainable_weights)
        rows.append(
            {
                "model": name,
                "config": f"{size}x{size}, batch {batch}",
                "variant": variant,
                "params": params,
                "train_step_ms": 1000 * t,
                "train_img_s": batch / t,
                "vs_baseline": t / base,
                "infer_ms": 1000 * i,
            }
        )
    return rows


def table(rows):
    lines = [
        "| model | input, batch | variant | params | train step (ms) | train img/s "
        "| step vs baseline | inference (ms/batch) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['variant']} | {r['params']:,} "
            f"| {r['train_step_ms']:.0f} | {r['train_img_s']:.1f} "
            f"| {r['vs_baseline']:.2f}x | {r['infer_ms']:.0f} |"
        )
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"keras {keras.__version__} ({keras.backend.backend()})"
    )


def write_section(path, text):
    section = f"{START}\n{text}\n{END}"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if START in old:
        pattern = re.escape(START) + ".*?" + re.escape(END)
        new = re.sub(pattern, lambda _: section, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg13"])
    parser.add_argument("--variants", nargs="+", default=list(zoo.VARIANTS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument(
        "--write", metavar="PATH", help="update the section in this Markdown file"
    )
    args = parser.parse_args()
    if args.variants[0] != "baseline":
        args.variants.insert(0, "baseline")

    start = time.time()
    load = os.getloadavg()[0]
    rows = []
    for config in args.configs:
        for name in args.models:
            rows += bench(
                name, config, args.variants, args.steps, args.warmup, args.num_classes
            )
    text = "\n".join(
        [
            "## Zoo models: training and inference speed (benchmarks/bench_models.py)",
            "",
            f"- Date: {datetime.date.today().isoformat()}; machine: {machine()}.",
            f"- Command: `python {' '.join(sys.argv)}` ({time.time() - start:.0f} s; "
            f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at "
            "the end).",
            f"- Medians of {args.steps} steps after {args.warmup} warm-up steps, "
            f"variants timed round robin; {args.num_classes} classes, default options "
            "(zero padding, filt_size 4, fixed polyphase order, strided stem conv), "
            "SGD with momentum, no XLA. Inference is `predict_on_batch` on the same "
            "batch.",
            "",
            table(rows),
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
