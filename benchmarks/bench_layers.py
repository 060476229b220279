"""Times layers forward and forward+backward on the TensorFlow, JAX or torch CPU
backend.

    python benchmarks/bench_layers.py                        # every case
    python benchmarks/bench_layers.py --backend jax --section bench_layers_jax
    python benchmarks/bench_layers.py --backend torch --section bench_layers_torch
    python benchmarks/bench_layers.py --cases "BlurPool2D*" --repeats 50 --no-write
    python benchmarks/bench_layers.py --data-format channels_first \\
        --section bench_layers_channels_first

A case is a `(name, factory)` pair in `CASES`; `factory(data_format)` returns a layer
(or any callable of one tensor). To benchmark another layer, append a case. The first
case, `MaxPooling2D(2)`, is the baseline of the ratio columns and always runs. The
"keras.ops" cases time the portable path of the blur layers (JAX, unknown spatial
sizes), which the TensorFlow fast path replaces.

Each input shape is a float32 tensor (given as batch x height x width x channels).
On TensorFlow, forward and forward+backward each run inside a `tf.function` without
XLA (XLA is 15-30x slower for these ops on CPU), as `model.fit` runs them; on JAX
(`--backend jax`, set as KERAS_BACKEND before Keras is imported) inside `jax.jit`,
forward+backward as `jax.jit(jax.grad(...))`; on torch (`--backend torch`) eagerly,
forward under `torch.no_grad()`, backward by `torch.autograd.grad`. The backward
pass is the gradient with respect to the input and the layer's trainable weights for
a fixed random upstream gradient, passed as an argument so that the compiler cannot
fold it. After
`--warmup` calls of every function, `--repeats` rounds run every function once in
turn, so a burst of load from another process hits all cases alike; the table gives
the median of each.

The table is printed and written into BENCHMARKS.md (repository root) between
`<!-- SECTION:start -->` and `<!-- SECTION:end -->`, replacing only that section; a
run of a subset of cases should pass its own `--section` so it does not replace the
full table.
"""

import argparse
import datetime
import fnmatch
import math
import os
import pathlib
import shlex
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def _backend_argument(parser):
    parser.add_argument("--backend", default="tensorflow", choices=BACKENDS)


def _backend_from_argv():
    # The backend must be known before Keras is imported.
    parser = argparse.ArgumentParser(add_help=False)
    _backend_argument(parser)
    return parser.parse_known_args()[0].backend


BACKEND = _backend_from_argv()
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if BACKEND == "jax":
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
elif BACKEND == "torch":
    import torch  # noqa: E402
else:
    import tensorflow as tf  # noqa: E402

import markdown_sections  # noqa: E402

from keras_shiftinv import ops as si_ops  # noqa: E402
from keras_shiftinv.layers import (  # noqa: E402
    BlurPool2D,
    MaxBlurPool2D,
    OffsetSubsample,
    PolyphaseDown2D,
    ShiftInvariantDown,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAD_MODES = ("reflect", "replicate", "zero", "circular")
DEFAULT_SHAPES = "32x56x56x64,32x28x28x128"


def _portable(pad_mode, pool_size=None):
    """The keras.ops path of BlurPool2D(4) (MaxBlurPool2D with `pool_size`), which
    other backends and unknown spatial sizes take: the "before" of the TF fast path."""

    def factory(data_format):
        def call(x):
            if pool_size:
                x = keras.ops.max_pool(x, pool_size, 1, "valid", data_format)
            return si_ops._blur_pool2d_portable(x, 4, (2, 2), pad_mode, data_format)

        return call

    return factory


class GroupedConvModule(keras.layers.Layer):
    """ShiftInvariantDown(128) built from Keras layers: OffsetSubsample, a grouped
    Conv2D (XLA on TensorFlow's CPU) and a 1x1 Conv2D: the "before"."""

    def __init__(self, data_format):
        super().__init__()
        self.data_format = data_format

    def build(self, input_shape):
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        self.subsample = OffsetSubsample(data_format=self.data_format)
        self.group = keras.layers.Conv2D(
            math.lcm(channels, 128),
            3,
            padding="same",
            groups=channels,
            data_format=self.data_format,
        )
        self.pointwise = keras.layers.Conv2D(128, 1, data_format=self.data_format)

    def call(self, x):
        return self.pointwise(self.group(self.subsample(x)))


# Issue 3: ShiftInvariantDown next to the strided conv it replaces and to the
# anti-aliased conv (stride 1, then BlurPool2D); run them with
# --baseline "Conv2D(128, 3, strides=2)".
POLYPHASE_CASES = [
    (
        "Conv2D(128, 3, strides=2)",
        lambda data_format: keras.layers.Conv2D(
            128, 3, strides=2, padding="same", data_format=data_format
        ),
    ),
    (
        "Conv2D(128, 3) + BlurPool2D(4)",
        lambda data_format: keras.Sequential(
            [
                keras.layers.Conv2D(128, 3, padding="same", data_format=data_format),
                BlurPool2D(4, data_format=data_format),
            ]
        ),
    ),
    *[
        (
            f"ShiftInvariantDown(128, {branch}{extra})",
            lambda data_format, branch=branch, kwargs=kwargs: ShiftInvariantDown(
                128, branch, data_format=data_format, **kwargs
            ),
        )
        for branch in ("group", "conv3d")
        for extra, kwargs in (
            ("", {}),
            (", aps, circular", {"polyphase_order": "aps", "pad_mode": "circular"}),
        )
    ],
    ("Keras grouped Conv2D module (before)", GroupedConvModule),
]

CASES = [
    (
        "MaxPooling2D(2)",
        lambda data_format: keras.layers.MaxPooling2D(2, data_format=data_format),
    ),
    *[
        (
            f"BlurPool2D(4, {mode})",
            lambda data_format, mode=mode: BlurPool2D(
                filt_size=4, pad_mode=mode, data_format=data_format
            ),
        )
        for mode in PAD_MODES
    ],
    (
        "MaxBlurPool2D()",
        lambda data_format: MaxBlurPool2D(data_format=data_format),
    ),
    (
        "PolyphaseDown2D()",
        lambda data_format: PolyphaseDown2D(data_format=data_format),
    ),
    *[(f"keras.ops BlurPool2D(4, {mode})", _portable(mode)) for mode in PAD_MODES],
    ("keras.ops MaxBlurPool2D()", _portable("reflect", pool_size=2)),
    *POLYPHASE_CASES,
]


def _float_leaves(outputs):
    return [
        o
        for o in keras.tree.flatten(outputs)
        if "float" in keras.backend.standardize_dtype(o.dtype)
    ]


def _upstream(outputs):
    return [
        keras.random.normal(o.shape, dtype=o.dtype, seed=1)
        for o in _float_leaves(outputs)
    ]


def tf_timed_functions(layer, x):
    """The case's forward and forward+backward `tf.function`s on `x`."""
    layer(x)  # builds the layer (and its weights, if any) outside the functions
    weights = list(getattr(layer, "trainable_variables", []))

    @tf.function(jit_compile=False)
    def forward(x):
        return layer(x)

    upstream = _upstream(forward(x))

    @tf.function(jit_compile=False)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = _float_leaves(layer(x))
        return tape.gradient(outputs, [x, *weights], output_gradients=upstream)

    return forward, forward_backward


def jax_timed_functions(layer, x):
    """The case's forward and forward+backward `jax.jit` functions on `x`, each
    waiting for its result."""
    layer(x)
    if isinstance(layer, keras.Layer):
        weights = [v.value for v in layer.trainable_variables]
        fixed = [v.value for v in layer.non_trainable_variables]

        def apply(x, weights):
            return layer.stateless_call(weights, fixed, x)[0]
    else:
        weights = []

        def apply(x, weights):
            return layer(x)

    forward = jax.jit(apply)
    upstream = _upstream(forward(x, weights))

    def loss(x, weights, upstream):
        outputs = _float_leaves(apply(x, weights))
        return sum(jnp.sum(o * u) for o, u in zip(outputs, upstream, strict=True))

    gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return (
        lambda x: jax.block_until_ready(forward(x, weights)),
        lambda x: jax.block_until_ready(gradient(x, weights, upstream)),
    )


def torch_timed_functions(layer, x):
    """The case's forward (without autograd) and forward+backward functions on `x`."""
    layer(x)
    weights = [v.value for v in getattr(layer, "trainable_variables", [])]

    def forward(x):
        with torch.no_grad():
            return layer(x)

    upstream = _upstream(forward(x))

    def forward_backward(x):
        x = x.detach().requires_grad_(True)
        outputs = _float_leaves(layer(x))
        return torch.autograd.grad(outputs, [x, *weights], grad_outputs=upstream)

    return forward, forward_backward


timed_functions = {
    "jax": jax_timed_functions,
    "torch": torch_timed_functions,
}.get(BACKEND, tf_timed_functions)


def run(cases, shapes, data_format, repeats, warmup):
    """{(shape, name, "fwd"|"fwd+bwd"): (median wall ms, median process CPU ms)}."""
    results = {}
    for shape in shapes:
        x = keras.random.normal(shape, seed=0)
        if data_format == "channels_first":
            x = keras.ops.transpose(x, (0, 3, 1, 2))
        functions = {}
        for name, factory in cases:
            forward, forward_backward = timed_functions(factory(data_format), x)
            functions[(shape, name, "fwd")] = forward
            functions[(shape, name, "fwd+bwd")] = forward_backward
        for fn in functions.values():
            for _ in range(warmup):
                fn(x)
        times = {key: ([], []) for key in functions}
        print(f"input {'x'.join(map(str, shape))} ({data_format})")
        progress = keras.utils.Progbar(repeats, unit_name="round")
        for round_ in range(repeats):
            for key, fn in functions.items():
                wall, cpu = time.perf_counter(), time.process_time()
                fn(x)
                times[key][0].append(time.perf_counter() - wall)
                times[key][1].append(time.process_time() - cpu)
            progress.update(round_ + 1)
        for key, (wall, cpu) in times.items():
            results[key] = (1e3 * np.median(wall), 1e3 * np.median(cpu))
    return results


def table(results, cases, shapes):
    baseline = cases[0][0]
    header = ["input", "layer"]
    for kind in ("forward", "forward+backward"):
        header += [f"{kind} ms", "ratio", f"{kind} CPU ms", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|---|---" + "|---:" * 8 + "|"]
    for shape in shapes:
        for name, _ in cases:
            cells = ["x".join(map(str, shape)), name]
            for kind in ("fwd", "fwd+bwd"):
                measured = results[(shape, name, kind)]
                base = results[(shape, baseline, kind)]
                for value, reference in zip(measured, base, strict=True):
                    cells += [f"{value:.2f}", f"{value / reference:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _command_output(command, prefix=""):
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    lines = [line for line in out.stdout.splitlines() if line.startswith(prefix)]
    return lines[0][len(prefix) :].strip() if lines else "unknown"


def _framework():
    if BACKEND == "jax":
        return f"JAX {jax.__version__} (CPU)"
    if BACKEND == "torch":
        return f"PyTorch {torch.__version__} (CPU)"
    return f"TensorFlow {tf.__version__}"


def _compilation(args):
    if BACKEND == "jax":
        return "`jax.jit` (XLA), default threads"
    if BACKEND == "torch":
        return f"eager, {torch.get_num_threads()} torch threads (its default)"
    return f"`tf.function` without XLA, {args.threads or 'default'} TensorFlow threads"


def machine_facts(args, load_before):
    command = shlex.join(["python", "benchmarks/bench_layers.py", *sys.argv[1:]])
    now = datetime.datetime.now(datetime.timezone.utc)
    return "\n".join(
        [
            f"- Command: `{command}`",
            f"- Date: {now:%Y-%m-%d %H:%M} UTC",
            f"- Machine: {_command_output(['nproc'])} CPUs (`nproc`), "
            f"{_command_output(['lscpu'], 'Model name:')} (`lscpu`), "
            f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} "
            "after the run (1 min)",
            f"- {_framework()}, Keras {keras.__version__}, "
            f"Python {sys.version.split()[0]}",
            f"- float32, {args.data_format}, {_compilation(args)}; medians of "
            f"{args.repeats} rounds after {args.warmup} warm-up calls",
            f"- ratio: to {args.baseline} on the same input. CPU ms: process CPU "
            "time per call (all threads), less sensitive than wall time to other "
            "processes on the machine, but counting threads that spin while idle",
        ]
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _backend_argument(parser)
    parser.add_argument(
        "--cases",
        default="*",
        help="comma-separated name patterns (fnmatch) of the cases to run",
    )
    parser.add_argument(
        "--shapes",
        default=DEFAULT_SHAPES,
        help="comma-separated input shapes, batch x height x width x channels",
    )
    parser.add_argument(
        "--data-format",
        default="channels_last",
        choices=("channels_last", "channels_first"),
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default); "
        "TensorFlow only",
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--baseline",
        default=CASES[0][0],
        help="the case the ratio columns divide by; it always runs",
    )
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--section",
        default="bench_layers",
        help="name of the delimited section of --output to replace",
    )
    parser.add_argument("--no-write", action="store_true", help="only print")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads and BACKEND != "tensorflow":
        raise ValueError(f"--threads is for TensorFlow only. Received: {BACKEND}")
    if args.list:
        print("\n".join(name for name, _ in CASES))
        return
    patterns = args.cases.split(",")
    baseline = [case for case in CASES if case[0] == args.baseline]
    if not baseline:
        raise SystemExit(f"no case named {args.baseline!r}; see --list")
    cases = baseline + [
        case
        for case in CASES
        if case is not baseline[0]
        and any(fnmatch.fnmatchcase(case[0], p.strip()) for p in patterns)
    ]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = run(cases, shapes, args.data_format, args.repeats, args.warmup)
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    if BACKEND != "tensorflow":
        threads = {"jax": "JAX", "torch": "torch"}[BACKEND]
    title = f"## Layer speed: {args.data_format}, {threads} (bench_layers.py)"
    facts = machine_facts(args, load_before)
    body = f"{title}\n\n{facts}\n\n{table(results, cases, shapes)}"
    print(body)
    if not args.no_write:
        markdown_sections.write_section(args.output, args.section, body)
        print(f"wrote section {args.section!r} of {args.output}")


if __name__ == "__main__":
    main()
