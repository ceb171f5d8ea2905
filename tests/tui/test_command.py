"""The ``chat`` Click command: options, lazy import of Textual, and what it hands the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blendin_local.commands import chat as command
from blendin_local.errors import UsageError


def test_importing_the_command_does_not_import_textual() -> None:
    code = "import sys, blendin_local.commands.chat; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(command.chat_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--base", "--guide", "--method", "--gamma", "--alpha", "--system", "--resume"):
        assert option in result.output
    assert "esc stops" in result.output


def test_the_cli_group_has_the_chat_command() -> None:
    from blendin_local.cli import cli

    result = CliRunner().invoke(cli, ["chat", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output


def test_command_builds_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options reach the app: settings, system prompt, resume, and what was given explicitly."""
    import tui.app

    made: dict[str, Any] = {}

    class FakeApp:
        def __init__(self, **kwargs: object) -> None:
            made.update(kwargs)

        def run(self) -> None:
            made["ran"] = True

    monkeypatch.setattr(tui.app, "ChatApp", FakeApp)
    monkeypatch.setattr(command, "resolve_model", lambda spec: Path(spec))
    result = CliRunner().invoke(
        command.chat_command,
        ["--method", "base", "--gamma", "0.3", "--alpha", "0.5", "--resume", "--system", "Hi."],
    )
    assert result.exit_code == 0, result.output
    assert made["ran"]
    settings = made["settings"]
    assert (settings.method, settings.gamma, settings.alpha, settings.diagnostics) == (
        "base", 0.3, 0.5, True)
    assert settings.reuse_cache  # a chat evaluates only the new part of its history
    assert made["system"] == "Hi." and made["resume"] == "last"
    assert {"method", "gamma", "alpha", "system"} <= set(made["keep"])
    assert "support" not in made["keep"]
    assert callable(made["load_pair"])
    result = CliRunner().invoke(command.chat_command, ["--fresh-cache"])
    assert result.exit_code == 0, result.output
    assert not made["settings"].reuse_cache


def test_bad_options_fail_before_the_app_starts() -> None:
    with pytest.raises(UsageError, match="--alpha"):
        CliRunner().invoke(command.chat_command, ["--alpha", "2"], catch_exceptions=False)
    with pytest.raises(UsageError, match="anti-expert"):
        command.methods_to_load("proxy", None)
    assert command.methods_to_load("base", None) == ["base", "blendin"]
