"""The method registry (``blendin_local/methods``): every method's facts come from its spec, and a
method is added by one file — shown here with a throw-away method written outside the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from blendin_local import methods
from blendin_local.errors import UsageError
from blendin_local.evaluation.runner import build_grid
from blendin_local.generation.generate import generate
from blendin_local.methods.spec import MethodSpec
from blendin_local.prompts import Conversation
from blendin_local.replay.teacher_forcing import replayable
from blendin_local.serve.app import servable_models
from blendin_local.settings import GenerationSettings

from fakes import cross_pair

ROOT = Path(__file__).resolve().parents[1]


def test_the_registry_lists_every_method_module_in_the_users_order():
    assert methods.names() == ("blendin", "base", "guide", "nudging", "ensemble", "proxy")
    for name, spec in methods.METHODS.items():
        assert isinstance(spec, MethodSpec) and spec.name == name and spec.help
        assert spec.drives in spec.roles and spec.steps and spec.colour.startswith("#")


def test_an_unknown_method_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError, match=r"--method must be one of blendin, base, .*got 'blend'"):
        methods.get("blend")


def test_facts_elsewhere_are_read_from_the_specs():
    assert replayable() == ("blendin", "base", "ensemble", "proxy")
    assert methods.using("anti") == ["proxy"]
    grid = build_grid(["blendin", "nudging", "ensemble"], [0.3, 0.5], [None])
    assert [(s.method, s.gamma) for s in grid] == [
        ("blendin", 0.3), ("blendin", 0.5), ("nudging", 0.3), ("nudging", 0.5), ("ensemble", None)]
    assert servable_models(cross_pair()) == ["blendin", "base", "guide", "nudging", "ensemble"]


def test_ensemble_runs_with_its_fixed_knobs():
    settings = GenerationSettings(method="ensemble", gamma=0.1, alpha=0.9, max_tokens=3)
    gen = generate(cross_pair(), Conversation.single("Q"), settings)
    assert gen.settings.alpha == 0.5 and gen.settings.gamma == float("inf")
    assert all(step.intervened and step.alpha == 0.5 for step in gen)


ECHO = '''
"""A throw-away method for the registry test: the base alone under another name."""
from blendin_local.methods.full import base_driven_steps
from blendin_local.methods.spec import MethodSpec

SPEC = MethodSpec(name="echo", help="The base alone, registered from outside the package.",
                  roles=frozenset({"base"}), drives="base", colour="#000000", replays=True,
                  steps={"full": base_driven_steps}, rank=50)
'''


def test_a_method_is_one_file(tmp_path, tiny_gguf):
    """A copy of the package plus one file, ``methods/echo.py``, has ``--method echo`` in the CLI,
    and it runs: no other file names the method."""
    copy = tmp_path / "blendin_local"
    shutil.copytree(ROOT / "blendin_local", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods" / "echo.py").write_text(textwrap.dedent(ECHO))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "blendin_local.cli", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import blendin_local; print(blendin_local.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.stdout.strip() == str(copy / "__init__.py")  # the copy, not the checkout
    helped = cli("generate", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "proxy|echo]" in " ".join(helped.stdout.split())
    ran = cli("generate", "--method", "echo", "--base", str(tiny_gguf), "--max-tokens", "4",
              "--no-chat", "--json", "Hello")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["method"] == "echo" and result["tokens"] >= 1
    base = cli("generate", "--method", "base", "--base", str(tiny_gguf), "--max-tokens", "4",
               "--no-chat", "--json", "Hello")
    assert json.loads(base.stdout)["text"] == result["text"]  # the same step source as base
    (copy / "methods" / "echo.py").unlink()  # the method lived in that one file only
    absent = cli("generate", "--method", "echo", "--base", str(tiny_gguf), "Hello")
    assert absent.returncode == 2 and "'echo' is not one of" in absent.stderr
