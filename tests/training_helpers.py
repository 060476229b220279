"""Tiny data sets and subprocess runs for the training and CLI tests."""

import gzip
import os
import pathlib
import socket
import struct
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]

# A model small enough that a run takes seconds: VGG-11 at 1/16 width (4 to 32
# channels; it traces much faster than a ResNet) on 8x8 images.
TINY = [
    "--model",
    "vgg11",
    "--variant",
    "baseline",
    "--width-multiplier",
    "0.0625",
    "--batch-size",
    "8",
    "--lr",
    "0.02",
    "--validation-split",
    "0.25",
    "--consistency-images",
    "8",
    "--max-shift",
    "4",
    "--verbose",
    "2",
]


def write_image_folder(root, size=8, classes=3, train_per_class=8, test_per_class=2):
    """`root/{train,test}/class_k/*.png`: grayscale images whose brightness and a
    bright pixel's position depend on the class, so the classes can be learnt."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for k in range(classes):
            folder = os.path.join(root, split, f"class_{k}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 40, (size, size)) + 60 * k
                image[k, k] = 255
                Image.fromarray(image.astype(np.uint8)).save(
                    os.path.join(folder, f"{i}.png")
                )
    return str(root)


def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder, prefix, images, labels, gz):
    """`folder/PREFIX-{images-idx3,labels-idx1}-ubyte[.gz]`, as MNIST is stored."""
    ext = ".gz" if gz else ""
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        path = os.path.join(folder, f"{prefix}-{kind}-ubyte{ext}")
        opener = gzip.open if gz else open
        with opener(path, "wb") as f:
            f.write(idx_bytes(array))


def tiny_args(data_dir, out, epochs=2, *extra):
    return [
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        *TINY,
        *extra,
    ]


def subprocess_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def cli_command(args):
    return [sys.executable, "-m", "keras_shiftinv", *args]


def run_python(code, timeout=300):
    """Runs `python -c CODE` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(args, timeout=300, **env):
    """Runs `python -m keras_shiftinv ARGS` to the end; returns the CompletedProcess."""
    return subprocess.run(
        cli_command(args),
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
