"""Every command's --help renders, and no command declares an option twice (two families of options
stacked on one command once both declared --api-key: click only warns, and one silently wins)."""

from __future__ import annotations

import warnings

import click
import pytest
from click.testing import CliRunner

from blendin_local.cli import cli


def all_commands() -> list[tuple[str, ...]]:
    ctx = click.Context(cli)
    out: list[tuple[str, ...]] = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        out.append((name,))
        if isinstance(command, click.Group):
            out += [(name, sub) for sub in command.list_commands(click.Context(command))]
    return out


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_help_renders_without_duplicate_options(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    ctx = click.Context(cli)
    command: click.Command | None = cli.get_command(ctx, path[0])
    for name in path[1:]:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
    assert command is not None
    flags = [f for p in command.params for f in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])]
    assert len(flags) == len(set(flags)), sorted(f for f in flags if flags.count(f) > 1)
