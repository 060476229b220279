"""Training throughput and inference latency of zoo models on this machine's CPU.

For each model and input configuration, builds the model in every variant, then
times `train_on_batch` and `predict_on_batch` (graph mode, no XLA: XLA is slower on
TensorFlow's CPU), visiting the variants round robin so that a change of machine load
hits all of them alike. Reports medians, and each variant's step time relative to
"baseline". With --write, replaces the `bench_models` section of BENCHMARKS.md.

Runs on the backend of KERAS_BACKEND: TensorFlow without XLA by default
(`--jit-compile true`: with XLA, Keras' `compile(jit_compile=True)`), JAX always
compiled by XLA, torch eagerly. The config "cifar-w8" is issue 24's: CIFAR stem,
width 1/8, batch 32.

With --references, each variant that has a PyTorch counterpart is also timed against
it, in the same round robin and process, with `torch.set_num_threads` set to the
threads TensorFlow runs ops on: "baseline" against torchvision's network in plain
torch.nn (`tests.zoo.torch_reference`), "blur" against antialiased-cnns (random
weights), "aps" against `tests.zoo.torch_reference` with its `APS` layer; same input,
batch, optimizer (SGD, momentum 0.9) and cross-entropy. The forward pass is in eval mode
under `torch.no_grad`, the train step is forward, backward and optimizer step.
With --memory, each variant's train step also runs in a fresh process, which
reports its peak resident memory and that peak minus its resident memory after the
imports.

With --layers, finds which ops make a variant slow instead: every layer of each
model is timed alone (forward and backward, at the shape and batch it has in the
model), and the times are summed per layer class (section `bench_models_layers`).

    python benchmarks/bench_models.py          # resnet18 and vgg13, all variants
    python benchmarks/bench_models.py --models resnet18 --configs cifar --steps 3
    python benchmarks/bench_models.py --references --memory --write BENCHMARKS.md
    python benchmarks/bench_models.py --flops --write BENCHMARKS.md  # counts only
    python benchmarks/bench_models.py --layers --models resnet18 --configs imagenet
    KERAS_BACKEND=jax python benchmarks/bench_models.py --models resnet18 \
        --configs cifar-w8 --variants group group-aps group-dense-lowpass aps blur
"""

import argparse
import collections
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The benchmarks' shared modules (on the path when this runs as a script, not when
# the tests load it by path). The package is imported as installed.
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import markdown_sections  # noqa: E402

import zoo  # noqa: E402

# name: (input size, batch size, builder options)
CONFIGS = {
    "imagenet": (224, 16, {}),
    "cifar": (32, 128, {"stem": "cifar"}),
    "cifar-w8": (32, 32, {"stem": "cifar", "width_multiplier": 1 / 8}),
}
# Variants of the benchmark beyond the zoo's: name -> (zoo variant, options).
BENCH_VARIANTS = {
    "group-aps": ("group", {"polyphase_order": "aps"}),
    "conv3d-aps": ("conv3d", {"polyphase_order": "aps"}),
    "group-dense-lowpass": (
        "group",
        {"placement": "dense", "module_initializer": "lowpass"},
    ),
}
# variant: what it is timed against with --references
REFERENCES = {
    "baseline": "torch.nn (torchvision's)",
    "blur": "antialiased_cnns",
    "aps": "torch.nn + APS",
}


def setting(config, size=None, batch=None):
    """(input size, batch size, builder options) of `config`, with the input size
    and batch size overridden when given."""
    default_size, default_batch, options = CONFIGS[config]
    return size or default_size, batch or default_batch, options


def batch_data(size, batch, num_classes):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype("float32")
    return x, rng.integers(0, num_classes, batch)


def default_jit_compile():
    """Keras' `jit_compile` the benchmark uses unless told: XLA on JAX (without
    it Keras runs JAX eagerly, op by op), not on TensorFlow (slower on its CPU)
    nor torch (`torch.compile`)."""
    return keras.backend.backend() == "jax"


def backend_name(jit_compile):
    """ "tensorflow", "tensorflow+XLA", "jax" or "torch"."""
    backend = keras.backend.backend()
    return f"{backend}+XLA" if jit_compile and backend == "tensorflow" else backend


def build(name, variant, size, options, num_classes, jit_compile=None):
    if not zoo.model_spec(name).has_stem:
        options = {k: v for k, v in options.items() if k != "stem"}
    variant, extra = BENCH_VARIANTS.get(variant, (variant, {}))
    options = {**options, **extra}
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
        jit_compile=default_jit_compile() if jit_compile is None else jit_compile,
    )
    return model


def timed(fn):
    """Wall time and CPU time (all threads of this process) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def nproc():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def tf_threads():
    """The threads TensorFlow runs an op on: its intra-op setting, by default one
    per core this process may run on."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.config.threading.get_intra_op_parallelism_threads() or nproc()
    return nproc()


def reference_model(name, variant, options, num_classes):
    """The PyTorch network the zoo model `name` in `variant` is timed against
    (the same layers, stem and head as the zoo's model with `options`), or None."""
    if variant not in REFERENCES:
        return None
    from torch import nn

    from tests.zoo import torch_reference

    resnet = name.startswith("resnet")
    stem = options.get("stem", "imagenet")
    if variant != "blur":
        if resnet:
            return torch_reference.ResNet(name, num_classes, stem, variant)
        return torch_reference.VGG(name, True, num_classes, "gap", variant)
    import antialiased_cnns

    # The zoo's default filt_size is 4, as antialiased-cnns'.
    if resnet:
        model = getattr(antialiased_cnns, name)(filter_size=4, num_classes=num_classes)
        if stem == "cifar":
            model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
    else:
        model = getattr(antialiased_cnns, f"{name}_bn")(filter_size=4)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(512, num_classes)
    # Zero padding as the zoo's blurs: reflection does not fit the 1x1 maps of
    # small inputs.
    for module in model.modules():
        if isinstance(module, antialiased_cnns.BlurPool):
            module.pad = nn.ZeroPad2d(module.pad.padding)
    return model


def torch_steps(model, x, y):
    """`(train, forward)`: one SGD step (momentum 0.9, cross-entropy) of `model`
    on the NHWC batch `x`, `y`, and its forward pass in eval mode without grad."""
    import torch

    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y).long()
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)

    def train():
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def forward():
        model.eval()
        with torch.no_grad():
            model(images)

    return train, forward


def memory_mib():
    """`(resident, peak resident)` memory of this process so far (MiB): Linux's
    VmRSS and VmHWM, which start afresh at exec (`ru_maxrss` does not: a child
    forked from a large process starts with its parent's peak); elsewhere
    `ru_maxrss` for both."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
        return tuple(
            int(re.search(rf"{key}:\s*(\d+) kB", status).group(1)) / 1024
            for key in ("VmRSS", "VmHWM")
        )
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak /= 2**20 if sys.platform == "darwin" else 2**10
        return peak, peak


def memory_child(
    name, config, variant, num_classes, size, batch, steps, jit_compile=None
):
    """In a fresh process (after the imports): builds the model and runs `steps`
    train steps; returns the peak resident memory and the one after the imports."""
    imports = memory_mib()[0]
    size, batch, options = setting(config, size, batch)
    model = build(name, variant, size, options, num_classes, jit_compile)
    x, y = batch_data(size, batch, num_classes)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {"imports_mib": imports, "peak_mib": memory_mib()[1]}


def peak_memory(
    name,
    config,
    variant,
    num_classes,
    size=None,
    batch=None,
    steps=2,
    jit_compile=None,
):
    """`memory_child` in a fresh Python process running this script (on the
    backend of KERAS_BACKEND, which it inherits)."""
    command = [sys.executable, os.path.abspath(__file__), "--memory-child"]
    command += ["--models", name, "--configs", config, "--variants", variant]
    command += ["--num-classes", str(num_classes), "--steps", str(steps)]
    if jit_compile is not None:
        command += ["--jit-compile", str(bool(jit_compile)).lower()]
    for option, value in (("--size", size), ("--batch", batch)):
        if value:
            command += [option, str(value)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(
    name,
    config,
    variants,
    steps,
    warmup,
    num_classes,
    size=None,
    batch=None,
    references=False,
    memory=False,
    jit_compile=None,
):
    """One row per variant (the first one is the baseline of the ratios)."""
    if jit_compile is None:
        jit_compile = default_jit_compile()
    size, batch, options = setting(config, size, batch)
    x, y = batch_data(size, batch, num_classes)
    models = {
        v: build(name, v, size, options, num_classes, jit_compile) for v in variants
    }
    # variant -> {measure: step function}, all timed round robin
    runs = {
        v: {
            "train": lambda m=model: m.train_on_batch(x, y),
            "infer": lambda m=model: m.predict_on_batch(x),
        }
        for v, model in models.items()
    }
    reference_params = {}
    if references:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(tf_threads())
        for variant in variants:
            model = reference_model(name, variant, options, num_classes)
            if model is not None:
                reference_params[variant] = sum(p.numel() for p in model.parameters())
                train, forward = torch_steps(model, x, y)
                runs[variant].update(ref_train=train, ref_infer=forward)
    times = {v: collections.defaultdict(list) for v in variants}
    for step in range(warmup + steps):
        for variant, fns in runs.items():
            for measure, fn in fns.items():
                wall, cpu = timed(fn)
                if step >= warmup:
                    times[variant][measure].append(wall)
                    times[variant][f"{measure}_cpu"].append(cpu)
        print(f"  {name} {config}: step {step + 1}/{warmup + steps}", flush=True)
    medians = {
        v: {measure: statistics.median(t) for measure, t in times[v].items()}
        for v in variants
    }
    base = medians[variants[0]]
    rows = []
    for variant in variants:
        m = medians[variant]
        params = sum(int(np.prod(w.shape)) for w in models[variant].trainable_weights)
        row = {
            "model": name,
            "config": f"{config}, {size}x{size}, batch {batch}",
            "backend": backend_name(jit_compile),
            "variant": variant,
            "params": params,
            "train_step_ms": 1000 * m["train"],
            "train_img_s": batch / m["train"],
            "vs_baseline": m["train"] / base["train"],
            "train_cpu_s": m["train_cpu"],
            "cpu_vs_baseline": m["train_cpu"] / base["train_cpu"],
            "infer_ms": 1000 * m["infer"],
        }
        if "ref_train" in m:
            row.update(
                reference=REFERENCES[variant],
                ref_params=reference_params[variant],
                ref_train_ms=1000 * m["ref_train"],
                ref_infer_ms=1000 * m["ref_infer"],
                train_vs_ref=m["train"] / m["ref_train"],
                infer_vs_ref=m["infer"] / m["ref_infer"],
            )
        rows.append(row)
    if memory:
        for row in rows:
            peak = peak_memory(
                name, config, row["variant"], num_classes, size, batch, 2, jit_compile
            )
            row["peak_rss_mib"] = peak["peak_mib"]
            row["peak_mib"] = peak["peak_mib"] - peak["imports_mib"]
        for row in rows:
            row["peak_vs_baseline"] = row["peak_mib"] / rows[0]["peak_mib"]
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


# header, row key, format; a column shows when a row has its key ("-" in the
# rows without it)
COLUMNS = (
    ("model", "model", "{}"),
    ("config, input, batch", "config", "{}"),
    ("backend", "backend", "{}"),
    ("variant", "variant", "{}"),
    ("params", "params", "{:,}"),
    ("forward (ms/batch)", "infer_ms", "{:.0f}"),
    ("train step (ms)", "train_step_ms", "{:.0f}"),
    ("train vs baseline", "vs_baseline", "{:.2f}x"),
    ("train CPU vs baseline", "cpu_vs_baseline", "{:.2f}x"),
    ("PyTorch reference", "reference", "{}"),
    ("ref. forward (ms)", "ref_infer_ms", "{:.0f}"),
    ("ref. train step (ms)", "ref_train_ms", "{:.0f}"),
    ("forward vs ref.", "infer_vs_ref", "{:.2f}x"),
    ("train vs ref.", "train_vs_ref", "{:.2f}x"),
    ("train peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
    ("peak above imports (MiB)", "peak_mib", "{:.0f}"),
    ("peak vs baseline", "peak_vs_baseline", "{:.2f}x"),
    ("forward GFLOPs per image", "gflops", "{:.3f}"),
    ("GFLOPs vs baseline", "flops_vs_baseline", "{:.2f}x"),
)


def forward_flops(model, size):
    """Floating-point operations of one image's forward pass, as TensorFlow's
    profiler counts them on the traced graph: convolutions (dense, depthwise,
    grouped), matrix products and element-wise arithmetic; gathers, scatters,
    padding and copies count zero."""
    import tensorflow as tf

    traced = tf.function(lambda x: model(x, training=False))
    graph = traced.get_concrete_function(
        tf.TensorSpec((1, size, size, 3), tf.float32)
    ).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def flops_rows(name, config, variants, num_classes, size=None):
    """One row per variant: forward GFLOPs per image and the ratio to the first
    variant's (the baseline)."""
    size, _, options = setting(config, size)
    rows = []
    for variant in variants:
        model = build(name, variant, size, options, num_classes)
        rows.append(
            {
                "model": name,
                "config": f"{config}, {size}x{size}",
                "variant": variant,
                "params": model.count_params(),
                "gflops": forward_flops(model, size) / 1e9,
            }
        )
        rows[-1]["flops_vs_baseline"] = rows[-1]["gflops"] / rows[0]["gflops"]
    return rows


def table(rows):
    columns = [c for c in COLUMNS if any(c[1] in r for r in rows)]
    lines = [
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "".join(" --- |" if f == "{}" else " ---: |" for _, _, f in columns),
    ]
    for r in rows:
        cells = [f.format(r[key]) if key in r else "-" for _, key, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores (nproc {nproc()}), Python "
        f"{platform.python_version()}, keras {keras.__version__} "
        f"({keras.backend.backend()})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg13"])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(zoo.VARIANTS),
        choices=[*zoo.VARIANTS, *BENCH_VARIANTS],
        help=f"zoo variants, or {', '.join(BENCH_VARIANTS)} (polyphase_order='aps')",
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--size", type=int, help="input size instead of the config's")
    parser.add_argument("--batch", type=int, help="batch size instead of the config's")
    parser.add_argument(
        "--jit-compile",
        choices=["true", "false"],
        help="Keras' jit_compile (XLA) for the train and predict steps; default: "
        "true on JAX, false on TensorFlow and torch",
    )
    parser.add_argument(
        "--references",
        action="store_true",
        help="also time the PyTorch references (torch.nn, antialiased_cnns, APS)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure each variant's peak memory in a fresh process",
    )
    parser.add_argument(
        "--layers", action="store_true", help="time each layer class instead"
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="count each variant's forward floating-point operations instead "
        "(no timing: valid on a busy machine)",
    )
    parser.add_argument(
        "--write", metavar="PATH", help="update the section in this Markdown file"
    )
    parser.add_argument(
        "--section",
        help="name of the section --write replaces (default: bench_models, "
        "bench_models_layers or bench_models_flops); a run of a subset should "
        "name its own",
    )
    # What `peak_memory` runs: one model, config and variant; prints JSON.
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jit_compile = default_jit_compile()
    if args.jit_compile is not None:
        jit_compile = args.jit_compile == "true"
    if args.memory_child:
        peak = memory_child(
            args.models[0],
            args.configs[0],
            args.variants[0],
            args.num_classes,
            args.size,
            args.batch,
            args.steps,
            jit_compile,
        )
        print(json.dumps(peak))
        return
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
    elif args.flops:
        title = (
            "## Zoo models: floating-point work per variant "
            "(benchmarks/bench_models.py)"
        )
        section = "bench_models_flops"
        method = (
            "- Forward floating-point operations of one image, counted by "
            "TensorFlow's profiler (`tf.compat.v1.profiler`, float_operation) on the "
            "traced inference graph: convolutions, matrix products and element-wise "
            "arithmetic; gathers, scatters, padding and copies count zero. A count, "
            "not a time: the floor a variant's step time cannot go under relative "
            "to the baseline unless the baseline is bound by something else "
            "(memory traffic, op overhead). A train step is about 3x the forward "
            f"work. Default options, {args.num_classes} classes."
        )
        rows = [
            row
            for config in args.configs
            for name in args.models
            for row in flops_rows(
                name, config, args.variants, args.num_classes, args.size
            )
        ]
        body = table(rows)
    else:
        title = (
            "## Zoo models: training and inference speed (benchmarks/bench_models.py)"
        )
        section = "bench_models"
        method = (
            f"- Medians of {args.steps} steps after {args.warmup} warm-up steps, "
            f"variants timed round robin; {args.num_classes} classes, default options "
            "(zero padding, filt_size 4, fixed polyphase order; the ImageNet stem conv "
            'is strided except in "aps"), SGD with momentum, '
            f"{'XLA' if jit_compile else 'no XLA'} (backend {backend_name(jit_compile)}"
            f", Keras `jit_compile={jit_compile}`). Inference is "
            "`predict_on_batch` on the same batch. CPU time is that of all the "
            "process's threads: steadier than wall time when other jobs share the "
            "cores."
        )
        if args.references:
            import torch

            method += (
                f"\n- PyTorch references (torch {torch.__version__}), timed in the "
                "same round robin and process on the same batch: "
                + "; ".join(f'"{v}": {ref}' for v, ref in REFERENCES.items())
                + ". They are the zoo's networks (CIFAR stem: 3x3/1 conv, no max "
                "pool; VGG head: global average pooling and the logits; "
                'antialiased-cnns\' models changed to those where needed); "APS" '
                "keeps the polyphase component of largest l2 norm after a 4-tap "
                'blur, where the zoo\'s "aps" puts `PolyphaseDown2D`. Forward: eval '
                "mode under `torch.no_grad`; train step: forward, cross-entropy, "
                "backward, SGD step (momentum 0.9). `vs ref.` is our time over the "
                "reference's (target: <= 0.5x)."
            )
        if args.memory:
            method += (
                "\n- Memory: each variant's model built and trained 2 steps in a "
                "fresh process; peak RSS is its peak resident memory (VmHWM), and "
                "the peak above the imports subtracts its resident memory (VmRSS) "
                'after importing keras, TensorFlow and the zoo; "peak vs '
                'baseline" compares the latter (target: <= 1.5x).'
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
                    args.size,
                    args.batch,
                    args.references,
                    args.memory,
                    jit_compile,
                )
        body = table(rows)
    text = "\n".join(
        [
            title,
            "",
            f"- Date: {datetime.date.today().isoformat()}; machine: {machine()}.",
            (
                f"- Threads: TensorFlow runs each op on {tf_threads()} (intra-op)"
                if keras.backend.backend() == "tensorflow"
                else f"- Threads: {keras.backend.backend()}'s default, {nproc()} cores"
            )
            + (
                f"; PyTorch `torch.set_num_threads({tf_threads()})`."
                if args.references
                else "."
            ),
            f"- Command: `KERAS_BACKEND={keras.backend.backend()} python "
            f"{' '.join(sys.argv)}` ({time.time() - start:.0f} s; "
            f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at "
            "the end).",
            method,
            "",
            body,
        ]
    )
    print(text)
    if args.write:
        markdown_sections.write_section(args.write, args.section or section, text)


if __name__ == "__main__":
    main()
