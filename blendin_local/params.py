"""Click parameter types for values that enter from the command line: checked where they enter,
and a bad value is a :class:`UsageError` (one line), not Click's usage block."""

from __future__ import annotations

from typing import Any

import click

from .limits import LIMITS, check, parse
from .textin import check_text


def _name(param: click.Parameter | None) -> str:
    if param is None:
        return "the value"
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


class Utf8Text(click.ParamType):
    """Text from argv: refused when it is not valid UTF-8 (the offset of the first bad byte)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return check_text(value, _name(param)) if isinstance(value, str) else value


class Limited(click.ParamType):
    """A number from :data:`limits.LIMITS` (``--seed``, ``--gamma``, ``--max-tokens``…): parsed and
    checked by the table the library and the server use, so all three say the same thing."""

    def __init__(self, name: str) -> None:
        self.limit = name
        self.name = "integer" if LIMITS[name].integer else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            return parse(self.limit, value)
        check(self.limit, value)
        return value


TEXT = Utf8Text()
SEED = Limited("seed")
