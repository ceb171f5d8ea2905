"""The limits of the decoding values, in one table. The CLI's option types (:mod:`params`), the
library's settings (:mod:`settings`, :mod:`sampling`) and the server's request fields all check a
value through :func:`check`, so they accept the same values and say the same thing about a bad one.

Messages name the CLI's flag (``--max-tokens``); the server rewrites it to its field (``max_tokens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import UsageError

SEED_MAX = 2**32 - 1  # llama.cpp seeds are uint32; NumPy accepts any non-negative int


@dataclass(frozen=True)
class Limit:
    """A number's type and range: ``integer`` or any real number, bounds closed unless ``*_open``;
    ``what`` overrides the generated description, ``note`` follows it."""

    flag: str
    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    what: str = ""
    note: str = ""

    def describe(self) -> str:
        if self.what:
            return self.what
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            if self.integer:
                return f"{kind} from {_num(self.low)} to {_num(self.high)}"
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        return kind

    def admits(self, value: object) -> bool:
        """Is ``value`` of this type (an int, or for a real number an int or a float; never a bool,
        never NaN) and in range?"""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def error(self, value: object) -> UsageError:
        return UsageError(f"{self.flag} must be {self.describe()}{self.note}, got {value!r}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


LIMITS: dict[str, Limit] = {
    "gamma": Limit("--gamma", low=0.0, note=" (> 1: always intervene)"),
    "alpha": Limit("--alpha", low=0.0, high=1.0, what="'auto' or a number in [0, 1]"),
    "cap": Limit("--cap", low=0.0, high=1.0, low_open=True, what="an intervention rate in (0, 1]"),
    "max_tokens": Limit("--max-tokens", integer=True, low=1),
    "bench_max_tokens": Limit("--max-tokens", integer=True, low=8,
                              note=" (a bench times several tokens per answer)"),
    "final_top": Limit("final_top (top logprobs)", integer=True, low=0, high=100),
    "temperature": Limit("--temperature", low=0.0, note=" (0 = greedy)"),
    "top_k": Limit("--top-k", integer=True, low=0, note=" (0 = off)"),
    "top_p": Limit("--top-p", low=0.0, high=1.0, low_open=True),
    "min_p": Limit("--min-p", low=0.0, high=1.0, high_open=True),
    "seed": Limit("--seed", integer=True, low=0, high=SEED_MAX),
    "batch": Limit("--batch", integer=True, low=1),
    "parallel": Limit("--parallel", integer=True, low=1),
}


def check(name: str, value: object) -> None:
    """Raise a :class:`UsageError` naming the parameter and the value unless ``value`` is within
    ``LIMITS[name]``."""
    limit = LIMITS[name]
    if not limit.admits(value):
        raise limit.error(value)


def parse_count(name: str, text: str | None) -> int | None:
    """A count option given as text (``--batch``, ``--parallel``), checked; None: not given (its
    default is chosen once the models are loaded)."""
    return None if text is None else int(parse(name, text))


def parse(name: str, text: str, *, flag: str | None = None) -> int | float:
    """A value of ``LIMITS[name]`` from text (the command line), checked; the error quotes the
    text as given and names ``flag`` if given (an option taking a list of them: ``--gammas``)."""
    limit = LIMITS[name] if flag is None else replace(LIMITS[name], flag=flag)
    try:
        value: int | float = int(text.strip(), 10) if limit.integer else float(text)
    except ValueError:
        raise limit.error(text) from None
    if not limit.admits(value):
        raise limit.error(text)
    return value
