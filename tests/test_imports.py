"""The package's modules form no import cycle (issue: ops and the TF fast path
imported each other; the layer package was the project's utility drawer)."""

import ast
import pathlib
import sys

import pytest

from tests.training_helpers import run_python

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


# Who may import whom (issue 23): the library (keras_shiftinv but its app) is
# at the bottom, the zoo above it, the application above both.
MAY_IMPORT = {
    "library": {"library"},
    "zoo": {"zoo", "library"},
    "app": {"app", "zoo", "library"},
}


def _room(module):
    if module.split(".")[0] == "zoo":
        return "zoo"
    if module == "keras_shiftinv.app" or module.startswith("keras_shiftinv.app."):
        return "app"
    return "library"


def test_imports_point_down():
    # Anywhere in a file, functions too. keras_shiftinv/__main__.py is the command
    # line's entry point: it runs the application, nothing imports it.
    modules = _modules()
    wrong = [
        f"{name} imports {imported}"
        for name, path in modules.items()
        if name != "keras_shiftinv.__main__"
        for imported in _imports(name, path, modules)
        if _room(imported) not in MAY_IMPORT[_room(name)]
    ]
    assert not wrong, wrong


def test_the_library_needs_only_keras_and_numpy():
    # At import time. TensorFlow is the TF backend's fast path (_blur_tf, which
    # ops imports on that backend only) and _keras_compat's functions.
    allowed = {"keras", "numpy", "keras_shiftinv", *sys.stdlib_module_names}
    found = {}
    for name, path in _modules().items():
        if _room(name) != "library" or name == "keras_shiftinv._blur_tf":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [node.module.split(".")[0]]
            else:
                continue
            found.update({root: name for root in roots if root not in allowed})
    assert not found, found


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph, "a") == ["a", "b", "c", "a"]
    assert _cycle(graph, "d") is None


@pytest.mark.parametrize(
    "first",
    [
        # Started as the console script; TensorFlow looks for Keras with
        # `find_spec` before importing it.
        "sys.argv[0] = 'keras-shiftinv'; import keras_shiftinv; "
        "assert 'keras' not in sys.modules; import importlib.util; "
        "assert importlib.util.find_spec('keras')",
        # A module of the package imports Keras while half-imported.
        "from keras_shiftinv import filters",
    ],
)
def test_importing_the_package_registers_its_layers_however_started(first):
    code = (
        f"import sys; {first}; import keras; "
        "print([keras.saving.get_registered_object('keras_shiftinv>' + name) "
        "for name in ('BlurPool2D', 'ShiftInvariantDown', 'LowPass', 'CyclicLR')])"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("<class 'keras_shiftinv.") == 4, result.stdout


def test_no_test_module_imports_another():
    # Shared helpers live in helper modules and fixtures in conftest.py: importing
    # a test module would collect its tests twice and tie the two files together.
    offenders = []
    for path in ROOT.glob("tests/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name.split(".")[-1].startswith("test_") for name in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
