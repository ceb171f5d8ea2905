"""The package's import graph: every module imports in a fresh interpreter, no module imports test
code, and no two modules depend on each other, however indirectly (imports inside functions and
under ``TYPE_CHECKING`` count: dodging a cycle with them does not remove it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("blendin_local", "tui")
# Packages whose __init__ builds a registry of its modules (importing them at once, or when used).
REGISTRIES = ("blendin_local.methods", "blendin_local.engines", "blendin_local.commands")


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name → (file, is a package) for every module of the shipped packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imported_names(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """Every name ``name`` imports anywhere in its file, resolved to our modules."""
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import sub` imports the module pkg.sub
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return found


def graph() -> dict[str, set[str]]:
    """Module → the modules that must be initialised to import it.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first: those count too, except the
    importer's own ancestors (already initialising). A registry package depends on all its modules.
    """
    mods = modules()
    known = set(mods)
    out: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if is_package:
            ancestors.add(name)
        deps: set[str] = set()
        for target in imported_names(name, path, is_package, known):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and prefix not in ancestors:
                    deps.add(prefix)
        if name in REGISTRIES:
            deps |= {m for m in known if m.startswith(name + ".")}  # subpackages' modules too
        out[name] = deps - {name}
    return out


def test_the_graph_sees_imports_inside_functions_and_type_checking(tmp_path):
    module = tmp_path / "mod.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n"
                      "def f():\n    from . import b\n")
    assert imported_names("pkg.mod", module, False, {"pkg.a", "pkg.b"}) >= {"pkg.a", "pkg.b"}
    g = graph()
    assert "blendin_local.gguf_info" in g["blendin_local.commands.models"]  # inside a function
    assert "blendin_local.methods" in g["blendin_local.pair_check"]
    assert "blendin_local.methods.nudging" in g["blendin_local.methods"]  # a registry lists its modules
    assert "blendin_local.methods" not in g["blendin_local.methods.full"]  # its own package


def test_no_import_cycles():
    g = graph()
    try:
        TopologicalSorter(g).static_order()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_a_cycle_is_found():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(g).static_order())


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_package_never_imports_test_code():
    test_modules = {p.stem for p in (ROOT / "tests").rglob("*.py")} - {"conftest"}
    for name, (path, is_package) in modules().items():
        leaked = imported_names(name, path, is_package, set()) & test_modules
        assert not leaked, f"{name} imports test code: {leaked}"
