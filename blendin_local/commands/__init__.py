"""The command family: one module per ``blendin-local`` command, each defining ``command`` (a Click
command or group named like its module).

This is the one registry of commands: their names are the modules listed here, read without
importing them, so a command's module (and what it needs: Textual, matplotlib, the web stack) is
imported only when that command runs. ``cli.py`` only assembles the group.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import click


@cache
def names() -> tuple[str, ...]:
    """Every command's name (its module's), sorted; ``_``-prefixed modules are shared helpers."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def load(name: str) -> click.Command:
    """The command called ``name`` (imports its module)."""
    command = importlib.import_module(f"{__name__}.{name}").command
    assert isinstance(command, click.Command) and command.name == name, name
    return command
