"""The saved-chat schema: every field's type is checked when a chat is loaded, so a damaged file is
refused with one message naming the field (and left untouched) instead of failing inside the app.

Step fields are checked against the ``Step`` dataclass's own type hints, so a new field is covered
(or, with a type this module does not know, fails at import rather than at load)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from blendin_local.generation.steps import Candidate, Provenance, Step


class SchemaError(ValueError):
    """A value of the wrong type; the message names where it is."""


Check = tuple[str, Callable[[Any], bool]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_hex(v: Any) -> bool:
    try:
        bytes.fromhex(v)
    except (TypeError, ValueError):
        return False
    return True


def _is_candidates(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(c, list) and len(c) == 3 and _is_int(c[0]) and isinstance(c[1], str)
        and _is_num(c[2]) for c in v
    )


STR: Check = ("a string", lambda v: isinstance(v, str))
INT: Check = ("an integer", _is_int)
NUM: Check = ("a number", _is_num)
BOOL: Check = ("true or false", lambda v: isinstance(v, bool))
OBJECT: Check = ("an object", lambda v: isinstance(v, dict))
STRINGS: Check = ("a list of strings", lambda v: isinstance(v, list)
                  and all(isinstance(x, str) for x in v))


def opt(check: Check) -> Check:
    desc, ok = check
    return f"{desc} or null", lambda v: v is None or ok(v)


SETTINGS: dict[str, Check] = {
    "method": STR, "gamma": NUM, "support": STR, "cap": opt(NUM), "guide_can_stop": BOOL,
    "max_tokens": INT, "temperature": NUM, "top_k": INT, "top_p": NUM, "min_p": NUM,
    "seed": opt(INT), "alpha": ("'auto' or a number", lambda v: v == "auto" or _is_num(v)),
}
SUMMARY: dict[str, Check] = {
    "text": STR, "method": STR, "stop_reason": opt(STR), "tokens": INT, "prompt_tokens": INT,
    "interventions": INT, "intervention_rate": NUM, "guide_changed": INT,
    "guide_changed_rate": NUM, "mean_alpha": opt(NUM), "mean_overlap10": opt(NUM),
    "mean_overlap100": opt(NUM), "by_provenance": OBJECT, "seconds": NUM, "prefill_s": NUM,
    "tokens_per_s": NUM, "time_split_s": OBJECT, "warnings": STRINGS,
}
# The form tui.chat.new_chat_id gives: the id names the file a chat is saved to, so a saved chat
# with any other id (``../victim``, an absolute path) is refused where it is read.
CHAT_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")
ID: Check = ("a chat id like 20261130-104512-3fa9",
             lambda v: isinstance(v, str) and CHAT_ID.fullmatch(v) is not None)
CHAT: dict[str, Check] = {
    "id": ID, "title": STR, "system": STR, "created": STR, "updated": STR,
    "settings": opt(OBJECT), "models": ("an object of strings", lambda v: isinstance(v, dict)
                                        and all(isinstance(x, str) for x in v.values())),
    "turns": ("a list", lambda v: isinstance(v, list)),
}
TURN: dict[str, Check] = {
    "role": ("'user' or 'assistant'", lambda v: v in ("user", "assistant")),
    "content": STR, "summary": opt(OBJECT), "settings": opt(OBJECT),
    "steps": opt(("a list", lambda v: isinstance(v, list))),
}


def _check_for(hint: Any) -> Check:
    """The check of a Step field from its type hint."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return opt(_check_for(inner))
    known: dict[Any, Check] = {
        int: INT, float: NUM, bool: BOOL, str: STR,
        bytes: ("hex digits", _is_hex),
        Provenance: (" or ".join(repr(p.value) for p in Provenance),
                     lambda v: v in {p.value for p in Provenance}),
        tuple[Candidate, ...]: ("a list of [token, text, probability]", _is_candidates),
    }
    if hint not in known:
        raise TypeError(f"chat_schema: no check for Step field type {hint!r}")
    return known[hint]


_HINTS = typing.get_type_hints(Step)
STEP: dict[str, Check] = {f.name: _check_for(_HINTS[f.name]) for f in dataclasses.fields(Step)}
STEP_REQUIRED = frozenset(
    f.name for f in dataclasses.fields(Step)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


def _fields(where: str, data: Any, schema: Mapping[str, Check],
            required: frozenset[str] = frozenset()) -> None:
    if not isinstance(data, dict):
        raise SchemaError(f"{where} must be an object, got {_show(data)}")
    missing = sorted(required - data.keys())
    if missing:
        raise SchemaError(f"{where} has no {missing[0]!r}")
    for key, (desc, ok) in schema.items():
        if key in data and not ok(data[key]):
            raise SchemaError(f"{where}.{key} must be {desc}, got {_show(data[key])}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def check_chat(data: dict[str, Any]) -> None:
    """Raises :class:`SchemaError` naming the first field of the wrong type."""
    _fields("chat", data, CHAT, frozenset({"id", "turns"}))
    if data.get("settings") is not None:
        _fields("chat.settings", data["settings"], SETTINGS)
    for i, turn in enumerate(data["turns"]):
        where = f"turns[{i}]"
        _fields(where, turn, TURN, frozenset({"role", "content"}))
        if turn.get("summary") is not None:
            _fields(f"{where}.summary", turn["summary"], SUMMARY)
        if turn.get("settings") is not None:
            _fields(f"{where}.settings", turn["settings"], SETTINGS)
        for j, step in enumerate(turn.get("steps") or ()):
            _fields(f"{where}.steps[{j}]", step, STEP, STEP_REQUIRED)
