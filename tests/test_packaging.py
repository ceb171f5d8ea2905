"""A non-editable install: the wheel holds every subpackage and ``catalog.json``, and the installed
package (not this checkout) finds its catalog."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("blendin_local", "blendin_local/engines", "blendin_local/methods", "blendin_local/serve",
               "blendin_local/evaluation", "tui", "tui/screens", "tui/widgets")


def test_the_wheel_ships_every_subpackage_and_the_catalog(tmp_path):
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("blendin_local", "tui"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", str(source), "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("blendin_local-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "blendin_local/catalog.json" in names and "tui/app.tcss" in names
    for package in SUBPACKAGES:
        assert f"{package}/__init__.py" in names, package
    shipped = {n for n in names if n.endswith(".py")}
    in_checkout = {str(p.relative_to(ROOT)) for pkg in ("blendin_local", "tui")
                   for p in (ROOT / pkg).rglob("*.py")}
    assert shipped == in_checkout  # every module, and no test code

    # Installed from the wheel into a bare folder and run from elsewhere: the catalog is found.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = ("import blendin_local, blendin_local.catalog as c; print(blendin_local.__file__); "
             "print(c.PACKAGE_CATALOG); print(sorted(c.load().default.items()))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    module, catalog, default = run.stdout.splitlines()
    assert module.startswith(str(site)) and catalog == str(site / "blendin_local" / "catalog.json")
    assert "base" in default and "guide" in default
