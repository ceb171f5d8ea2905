"""The per-position logprobs an OpenAI-compatible completions server sends, parsed and validated
into :class:`~.base.Position` objects where they enter.

Two shapes are in use for ``choices[i].logprobs`` (streamed or not):

- legacy completions (vLLM, llama-cpp-python's server): parallel lists
  ``{"tokens": [str], "token_logprobs": [float], "top_logprobs": [{string: logprob}]}``;
- a list of positions, as OpenAI's chat API and llama.cpp's native ``llama-server`` (also on
  ``/v1/completions``) send: ``{"content": [{"token": str, "logprob": float, "bytes": [int],
  "top_logprobs": [{"token": str, "logprob": float, "bytes": [int]}]}]}``.

Both become the same ``{string: logprob}`` alternatives; where a string is listed twice the later
entry wins, as a JSON object's duplicate key does in the legacy shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from ..base import Position


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{what} is not a number")
    return float(value)


def parse_positions(choice: Any) -> list[Position]:
    """Positions of one ``choices[i]`` object of a completions answer, in either shape (raises
    ValueError naming what is wrong)."""
    if not isinstance(choice, dict):
        raise ValueError("a choice is not an object")
    lp = choice.get("logprobs")
    if lp is None:
        return []
    if not isinstance(lp, dict):
        raise ValueError("logprobs is not an object")
    if "content" in lp:
        return _list_positions(lp["content"])
    return _legacy_positions(lp)


def _legacy_positions(lp: dict[str, Any]) -> list[Position]:
    tokens, values, tops = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs")
    if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(tops, list)):
        raise ValueError("logprobs lacks tokens / token_logprobs / top_logprobs lists")
    if not len(tokens) == len(values) == len(tops):
        raise ValueError("logprobs lists have different lengths")
    out = []
    for token, value, top in zip(tokens, values, tops, strict=True):
        if not isinstance(token, str):
            raise ValueError("a token is not a string")
        if top is None:
            top = {}
        if not isinstance(top, dict):
            raise ValueError("a top_logprobs entry is not an object")
        alternatives = {str(s): _number(v, "a top logprob") for s, v in top.items()}
        out.append(Position(token, _number(value, "a token logprob"), alternatives))
    return out


def _list_positions(content: Any) -> list[Position]:
    if content is None:
        return []
    if not isinstance(content, list):
        raise ValueError("logprobs.content is not a list")
    out = []
    for entry in content:
        token, value = _token_logprob(entry)
        top = entry.get("top_logprobs") or []
        if not isinstance(top, list):
            raise ValueError("a top_logprobs entry is not a list")
        out.append(Position(token, value, dict(_token_logprob(t) for t in top)))
    return out


def _token_logprob(entry: Any) -> tuple[str, float]:
    if not isinstance(entry, dict):
        raise ValueError("a logprobs.content entry is not an object")
    token = entry.get("token")
    if not isinstance(token, str):
        raise ValueError("a token is not a string")
    return token, _number(entry.get("logprob"), "a token logprob")


def stream_chunks(lines: Iterable[str]) -> Iterator[Any]:
    """The JSON chunks of a streamed completions body's ``data:`` lines, ``[DONE]`` and any other
    line left out: how the benchmarks' own clients read a server they started (the engine's
    reader, which checks how a stream ends, is ``RemoteModel._events``). Raises ``ValueError`` on
    a chunk that is not JSON."""
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[len("data: "):])
