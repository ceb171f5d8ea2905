"""``blendin-local chat``: the Click command. Textual is imported only when the command runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click
from click.core import ParameterSource

from blendin_local import methods as registry
from blendin_local.cli_options import (
    decoding_options,
    model_options,
    pair_from_options,
    settings_from_options,
)
from blendin_local.errors import UsageError
from blendin_local.models import default_model, resolve_model
from blendin_local.params import TEXT
from tui.chat import DEFAULT_SYSTEM


def methods_to_load(method: str, anti: str | None) -> list[str]:
    """The chat can switch method in its settings: load base and guide (and the anti-expert when
    one is named), whatever the starting method."""
    if "anti" in registry.get(method).roles and not anti:
        raise UsageError(f"method {method!r} needs --anti-expert MODEL (the guide's untuned counterpart)")
    return [method, "blendin", *(registry.using("anti") if anti else [])]


@click.command("chat")
@model_options
@decoding_options
@click.option("--system", type=TEXT, default=DEFAULT_SYSTEM, show_default=True,
              help="System prompt.")
@click.option("--resume", is_flag=False, flag_value="last", default=None, metavar="[CHAT_ID|PATH]",
              help="Re-open a saved chat (its id or file; alone: the most recent one).")
@click.option("--light", is_flag=True, help="Start with the light theme.")
@click.option("--fresh-cache", is_flag=True,
              help="Start every reply from empty KV caches (reproducible, slower as the chat "
                   "grows) instead of evaluating only the new part of the history.")
@click.pass_context
def chat_command(
    ctx: click.Context, system: str, resume: str | None, light: bool, fresh_cache: bool,
    **opts: Any,
) -> None:
    """Chat in the terminal with BlendIn: tokens coloured by who chose them, live statistics.

    Enter sends, esc stops, ctrl+r regenerates, ctrl+n starts a new chat, ctrl+o re-opens a saved
    one, ctrl+s opens the settings, ctrl+t shows tokens (click one to see its record), ctrl+y
    exports Markdown, ctrl+p lists every action, ctrl+q quits. Chats are saved after every
    message (in $BLENDIN_CHATS_DIR or the user data directory).
    """
    settings = replace(settings_from_options(opts, diagnostics=True), reuse_cache=not fresh_cache)
    methods = methods_to_load(settings.method, opts.get("anti"))
    # Name a missing model now, on the command line, rather than inside the app.
    for role in ("base", "guide"):
        if registry.needing(role, methods):
            resolve_model(opts.get(role) or default_model(role))
    given = {
        name for name in [*opts, "system"]
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }

    from tui.app import ChatApp
    from tui.terminal import private_terminal

    warnings: list[str] = []  # shown once the app has given the terminal back
    app = ChatApp(
        load_pair=lambda: pair_from_options(opts, methods, warn=warnings.append),
        settings=settings,
        system=system,
        resume=resume,
        keep=given,
        light=light,
    )
    with private_terminal():
        app.run()
    for message in warnings:
        click.echo(f"warning: {message}", err=True)


command = chat_command
