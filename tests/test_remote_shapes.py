"""Both logprob shapes servers send (``blendin_local.engines.remote.shapes``): legacy parallel lists and the
list of positions of llama.cpp's ``llama-server``; anything else is a ValueError."""

from __future__ import annotations

import pytest

from blendin_local.engines.remote.shapes import Position, parse_positions


def entry(token: str, logprob: float, top: list[tuple[str, float]] | None = None) -> dict:
    """One ``logprobs.content`` entry as llama-server writes it (ids and bytes included)."""
    out: dict = {"id": 7, "token": token, "bytes": list(token.encode()), "logprob": logprob}
    if top is not None:
        out["top_logprobs"] = [entry(t, lp) for t, lp in top]
    return out


def test_list_shape_gives_the_same_positions_as_the_legacy_shape():
    legacy = {"text": "ab", "logprobs": {
        "tokens": ["a", "b"], "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"a": -0.5, "c": -2.0}, {"b": -1.0}]}}
    listed = {"text": "ab", "logprobs": {"content": [
        entry("a", -0.5, [("a", -0.5), ("c", -2.0)]), entry("b", -1.0, [("b", -1.0)])]}}
    assert parse_positions(listed) == parse_positions(legacy) == [
        Position("a", -0.5, {"a": -0.5, "c": -2.0}), Position("b", -1.0, {"b": -1.0})]


def test_list_shape_later_duplicates_win_and_empty_forms_are_no_positions():
    # two byte-fallback tokens both shown as "" (incomplete UTF-8): the later one's value stays
    [p] = parse_positions({"logprobs": {"content": [entry("", -0.1, [("", -0.1), ("x", -2.0), ("", -4.0)])]}})
    assert p.top == {"": -4.0, "x": -2.0}
    assert parse_positions({"text": "", "logprobs": {"content": []}}) == []
    assert parse_positions({"text": "", "logprobs": {"content": None}}) == []
    assert parse_positions({"text": "", "logprobs": None}) == []
    [no_top] = parse_positions({"logprobs": {"content": [entry("a", -0.2)]}})
    assert no_top == Position("a", -0.2, {}) and no_top.top1_prob == pytest.approx(0.81873075)


@pytest.mark.parametrize("logprobs", [
    {"content": "nope"},
    {"content": ["nope"]},
    {"content": [{"token": 3, "logprob": -1.0}]},
    {"content": [{"token": "a"}]},
    {"content": [{"token": "a", "logprob": "x"}]},
    {"content": [{"token": "a", "logprob": float("nan")}]},
    {"content": [{"token": "a", "logprob": -1.0, "top_logprobs": {"a": -1.0}}]},
    {"content": [{"token": "a", "logprob": -1.0, "top_logprobs": [{"token": "a", "logprob": None}]}]},
])
def test_list_shape_rejects_malformed_entries(logprobs):
    with pytest.raises(ValueError):
        parse_positions({"text": "a", "logprobs": logprobs})
