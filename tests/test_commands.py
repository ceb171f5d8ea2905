"""The command family (``blendin_local/commands``): one module per command, listed without importing
them; a command imports what it needs only when it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from blendin_local import commands
from blendin_local.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_registry_lists_one_module_per_command():
    assert commands.names() == ("bench", "chat", "diagnose", "doctor", "eval", "generate", "models",
                                "replay", "serve")
    for name in commands.names():
        assert commands.load(name).name == name


def test_the_group_is_assembled_from_the_registry():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == list(commands.names())


def test_running_one_command_imports_only_its_module():
    code = ("import sys; from blendin_local.cli import cli; cli.get_command(None, 'generate'); "
            "loaded = sorted(m for m in sys.modules if m.startswith('blendin_local.commands.')); "
            "heavy = [m for m in ('textual', 'matplotlib', 'fastapi', 'uvicorn') if m in sys.modules]; "
            "print(loaded, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True).stdout.strip()
    assert out == "['blendin_local.commands.generate'] []"
