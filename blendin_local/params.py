"""Click parameter types for values that enter from the command line: checked where they enter,
and a bad value is a :class:`UsageError` (one line), not Click's usage block."""

from __future__ import annotations

from typing import Any

import click

from .errors import UsageError
from .textin import check_text

SEED_MAX = 2**32 - 1  # llama.cpp seeds are uint32; NumPy accepts any non-negative int


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


class Seed(click.ParamType):
    """A sampling seed: an integer in [0, 2**32 - 1], the same in every command."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        seed: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            seed = value
        elif isinstance(value, str):
            try:
                seed = int(value.strip(), 10)
            except ValueError:
                seed = None
        if seed is None or not 0 <= seed <= SEED_MAX:
            raise UsageError(f"{_name(param)} must be an integer from 0 to {SEED_MAX}, "
                             f"got {value!r}")
        return seed


TEXT = Utf8Text()
SEED = Seed()
