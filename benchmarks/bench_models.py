"""Training throughput and inference latency of zoo models on this machine's CPU.

For each model and input configuration, builds the model in every variant, then
times `train_on_batch` and `predict_on_batch` (graph mode, no XLA: XLA is slower on
TensorFlow's CPU), visiting the variants round robin so that a change of machine load
hits all of them alike. Reports medians, and each variant's step time relative to
"baseline". With --write, replaces the `bench_models` section of BENCHMARKS.md.

With --layers, finds which ops make a variant slow instead: every layer of each
model is timed alone (forward and backward, at the shape and batch it has in the
model), and the times are summed per layer class (section `bench_models_layers`).

    python benchmarks/bench_models.py          # resnet18 and vgg13, all variants
    python benchmarks/bench_models.py --models resnet18 --configs cifar --steps 3
    python benchmarks/bench_models.py --layers --models resnet18 --configs imagenet
"""

import argparse
import collections
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


def build(name, variant, size, options, num_classes):
    if not zoo.model_spec(name).has_stem:
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
    """Wall time and CPU time (all threads of this process) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(name, config, variants, steps, warmup, num_classes):
    size, batch, options = CONFIGS[config]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, num_classes, batch)
    models = {v: build(name, v, size, options, num_classes) for v in variants}
    train = {v: [] for v in variants}
    train_cpu = {v: [] for v in variants}
    infer = {v: [] for v in variants}
    for step in range(warmup + steps):
        for variant, model in models.items():
            t_train, c_train = timed(lambda m=model: m.train_on_batch(x, y))
            t_infer, _ = timed(lambda m=model: m.predict_on_batch(x))
            if step >= warmup:
                train[variant].append(t_train)
                train_cpu[variant].append(c_train)
                infer[variant].append(t_infer)
        print(f"  {name} {config}: step {step + 1}/{warmup + steps}", flush=True)
    rows = []
    base = statistics.median(train[variants[0]])
    base_cpu = statistics.median(train_cpu[variants[0]])
    for variant in variants:
        t = statistics.median(train[variant])
        c = statistics.median(train_cpu[variant])
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
                "train_cpu_s": c,
                "cpu_vs_baseline": c / base_cpu,
                "infer_ms": 1000 * i,
            }
        )
    return rows


def layer_step(layer, inputs):
    """A graph function: the layer's forward and backward pass on `inputs`."""
    import tensorflow as tf

    @tf.function(jit_compile=False)
    def step(*inputs):
        with tf.GradientTape() as tape:
            floats = [x for x in inputs if x.dtype.is_floating]
            tape.watch(floats)
            args = list(inputs) if len(inputs) > 1 else inputs[0]
            outputs = keras.tree.flatten(layer(args, training=True))
            loss = sum(
                tf.reduce_sum(tf.square(y)) for y in outputs if y.dtype.is_floating
            )
        return tape.gradient(loss, floats + layer.trainable_weights)

    return lambda: [g.numpy() for g in step(*inputs) if g is not None]


def layer_breakdown(name, config, variants, steps, num_classes):
    """Per variant, the summed forward+backward time of each layer class."""
    size, batch, options = CONFIGS[config]
    rng = np.random.default_rng(0)
    totals = {}
    for variant in variants:
        model = build(name, variant, size, options, num_classes)
        totals[variant] = collections.Counter()
        for layer in model.layers[1:]:
            inputs = []
            for spec in keras.tree.flatten(layer.input):
                shape = (batch, *spec.shape[1:])
                if "int" in spec.dtype:
                    inputs.append(rng.integers(0, 4, shape).astype(spec.dtype))
                else:
                    inputs.append(rng.standard_normal(shape).astype(spec.dtype))
            run = layer_step(layer, inputs)
            run()
            times = [timed(run)[0] for _ in range(steps)]
            totals[variant][type(layer).__name__] += statistics.median(times)
        print(f"  {name} {config} {variant}: layers timed", flush=True)
    classes = sorted(
        set().union(*totals.values()), key=lambda c: -max(t[c] for t in totals.values())
    )
    lines = [
        f"{name}, {size}x{size}, batch {batch}: summed forward+backward ms per "
        "layer class",
        "",
        "| layer class | " + " | ".join(variants) + " |",
        "| --- |" + " ---: |" * len(variants),
    ]
    for cls in classes:
        cells = " | ".join(f"{1000 * totals[v][cls]:.0f}" for v in variants)
        lines.append(f"| {cls} | {cells} |")
    cells = " | ".join(f"{1000 * sum(totals[v].values()):.0f}" for v in variants)
    lines.append(f"| total | {cells} |")
    return "\n".join(lines)


def table(rows):
    lines = [
        "| model | input, batch | variant | params | train step (ms) | train img/s "
        "| step vs baseline | train step CPU (s) | CPU vs baseline "
        "| inference (ms/batch) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['variant']} | {r['params']:,} "
            f"| {r['train_step_ms']:.0f} | {r['train_img_s']:.1f} "
            f"| {r['vs_baseline']:.2f}x | {r['train_cpu_s']:.2f} "
            f"| {r['cpu_vs_baseline']:.2f}x | {r['infer_ms']:.0f} |"
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


def write_section(path, name, text):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{text}\n{end}"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if start in old:
        pattern = re.escape(start) + ".*?" + re.escape(end)
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
        "--layers", action="store_true", help="time each layer class instead"
    )
    parser.add_argument(
        "--write", metavar="PATH", help="update the section in this Markdown file"
    )
    args = parser.parse_args()
    if args.variants[0] != "baseline":
        args.variants.insert(0, "baseline")

    start = time.time()
    load = os.getloadavg()[0]
    if args.layers:
        title = "## Zoo models: time per layer class (benchmarks/bench_models.py)"
        section = "bench_models_layers"
        method = (
            f"- Each layer timed alone, forward and backward in a `tf.function` (no "
            f"XLA) on random inputs of its shape in the model, median of {args.steps} "
            "runs after one, summed per layer class; default options, "
            f"{args.num_classes} classes. Isolated layers do not add up to a train "
            "step exactly, but show where the time goes."
        )
        body = "\n\n".join(
            layer_breakdown(name, config, args.variants, args.steps, args.num_classes)
            for config in args.configs
            for name in args.models
        )
    else:
        title = (
            "## Zoo models: training and inference speed (benchmarks/bench_models.py)"
        )
        section = "bench_models"
        method = (
            f"- Medians of {args.steps} steps after {args.warmup} warm-up steps, "
            f"variants timed round robin; {args.num_classes} classes, default options "
            "(zero padding, filt_size 4, fixed polyphase order; the ImageNet stem conv "
            'is strided except in "aps"), SGD with momentum, no XLA. Inference is '
            "`predict_on_batch` on the same batch. CPU time is that of all the "
            "process's threads: steadier than wall time when other jobs share the "
            "cores."
        )
        rows = []
        for config in args.configs:
            for name in args.models:
                rows += bench(
                    name,
                    config,
                    args.variants,
                    args.steps,
                    args.warmup,
                    args.num_classes,
                )
        body = table(rows)
    text = "\n".join(
        [
            title,
            "",
            f"- Date: {datetime.date.today().isoformat()}; machine: {machine()}.",
            f"- Command: `python {' '.join(sys.argv)}` ({time.time() - start:.0f} s; "
            f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at "
            "the end).",
            method,
            "",
            body,
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, section, text)


if __name__ == "__main__":
    main()
