"""What pip users get: a missing module is one line naming the extra to install,
before any work; the wheel installs into a fresh virtual environment and runs.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.training_helpers import REPO, subprocess_env, tiny_args, write_image_folder

# Runs argv[2:] as the command line (argv[1]: "cli") or imports the package
# (argv[1]: "import") with the modules named in $BLOCKED made uninstallable.
BLOCKING_RUNNER = textwrap.dedent(
    """
    import importlib.abc, os, sys

    BLOCKED = os.environ["BLOCKED"].split(",")


    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, Blocker())
    if sys.argv[1] == "import":
        import keras_shiftinv.layers
    else:
        sys.argv = ["keras-shiftinv", *sys.argv[2:]]
        from keras_shiftinv.app.cli import main

        sys.exit(main())
    """
)


def _run(blocked, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_RUNNER, *args],
        env=subprocess_env(BLOCKED=",".join(blocked), KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "blocked, args, needs",
    [
        (["matplotlib"], ["train", "--out", "{tmp}/run"], "matplotlib"),
        (["matplotlib"], ["evaluate", "--model", "m.keras", "--out", "{tmp}/r"], None),
        (["tensorflow"], ["train", "--out", "{tmp}/run"], "tensorflow"),
        (["tensorflow"], ["models"], "tensorflow"),
        (["tensorflow"], ["predict", "--model", "m.keras", "a.png"], "tensorflow"),
        (["tensorflow", "matplotlib"], ["evaluate", "--model", "m"], None),
    ],
)
def test_a_missing_module_is_one_line_before_any_work(blocked, args, needs, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    done = _run(blocked, "cli", *args)
    assert done.returncode == 2, done.stderr
    err = done.stderr
    assert (
        err.startswith(f"error: the {args[0]} command needs ") and err.count("\n") == 1
    )
    for module in [needs] if needs else blocked:
        assert module in err
    assert 'pip install "keras-shiftinv[tf]"' in err
    assert os.listdir(tmp_path) == []  # no run folder, no report folder


def test_help_without_a_backend_and_import_says_what_to_install():
    done = _run(["tensorflow"], "cli", "--help")
    assert done.returncode == 0 and "train" in done.stdout
    done = _run(["tensorflow"], "import")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: keras_shiftinv needs tensorflow")
    assert 'pip install "keras-shiftinv[tf]"' in last and "KERAS_BACKEND" in last


def _filtered_site_packages(folder):
    """A folder of links to this environment's installed packages, except this
    package (installed editable here): a fresh virtual environment that sees it
    gets TensorFlow and the other dependencies without a download, and pip must
    install keras-shiftinv itself from the wheel."""
    import site

    folder.mkdir()
    (source,) = [p for p in site.getsitepackages() if os.path.isdir(p)][:1]
    for name in os.listdir(source):
        lowered = name.lower().replace("-", "_")
        if "keras_shiftinv" in lowered or lowered.endswith(".pth"):
            continue
        os.symlink(os.path.join(source, name), folder / name)
    return folder


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    """~1 min: builds the wheel of the checkout, installs it with the [tf-cpu] extra
    into a new virtual environment (no network: the dependencies are those of this
    environment, seen through a .pth file), and runs --help, models and a tiny
    train from a folder outside the checkout."""
    import shutil
    import zipfile

    # A copy: setuptools builds in the source tree (build/, *.egg-info).
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache", ".venv"
        ),
    )
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("keras_shiftinv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert {"keras_shiftinv", "zoo"} <= packages and "tests" not in packages
    assert not [n for n in names if "torch_reference" in n or "/test" in n]
    assert any(n.endswith("/LICENSE") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
    ).strip()
    deps = _filtered_site_packages(tmp_path / "deps")
    with open(os.path.join(purelib, "deps.pth"), "w") as f:
        f.write(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--find-links", str(dist)]
        + [f"{wheel}[tf-cpu]"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    command = [str(venv / "bin" / "keras-shiftinv")]
    work = tmp_path / "work"
    data = write_image_folder(work / "data")

    def run(*args):
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, cwd=work
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.check_output(
        [python, "-c", "import keras_shiftinv, zoo; print(keras_shiftinv.__file__)"],
        text=True,
        env=env,
        cwd=work,
    )
    assert where.startswith(purelib)
    assert "evaluate" in run("--help")
    assert "resnet18" in run("models")
    out = run(*tiny_args(data, work / "run", 1))
    assert "test accuracy" in out and (work / "run" / "best.keras").exists()
