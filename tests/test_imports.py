"""The package's modules form no import cycle (issue: ops and the TF fast path
imported each other; the layer package was the project's utility drawer)."""

import ast
import pathlib
import subprocess
import sys

from tests.training_helpers import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    """{dotted name: path} of keras_shiftinv and zoo."""
    modules = {}
    for path in [*ROOT.glob("keras_shiftinv/**/*.py"), *ROOT.glob("zoo/*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name, path, modules):
    """The package modules `name` imports anywhere in its file (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _cycle(graph, start):
    """A path of imports from `start` back to itself, or None."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_imports_a_module_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # A package's __init__ re-exports its submodules: importing the package from
    # a submodule is not a cycle of the code itself.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(f"{m}.")}
    cycles = [c for name in graph if (c := _cycle(graph, name))]
    assert not cycles, cycles[0]


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph, "a") == ["a", "b", "c", "a"]
    assert _cycle(graph, "d") is None


def test_importing_the_package_registers_its_layers_however_started():
    # Started as the console script, and with a look for Keras (TensorFlow looks
    # with `find_spec` before importing it): importing the package imports no
    # Keras, and Keras, once imported, knows the layers.
    code = """if True:
        import importlib.util, sys
        sys.argv[0] = "keras-shiftinv"
        import keras_shiftinv
        assert "keras" not in sys.modules
        assert importlib.util.find_spec("keras") is not None
        import keras
        for name in ("BlurPool2D", "ShiftInvariantDown", "LowPass", "CyclicLR"):
            print(keras.saving.get_registered_object("keras_shiftinv>" + name))
    """
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "None" not in result.stdout
    assert len(result.stdout.splitlines()) == 4
