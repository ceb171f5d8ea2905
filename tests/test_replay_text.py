"""Replay along a continuation's text (--support top100) on fake pairs: the steps, the decisions,
and batched == per-step."""

from __future__ import annotations

import pytest

from blendin_local.errors import UsageError
from blendin_local.generation.generate import generate
from blendin_local.prompts import Conversation
from blendin_local.replay.teacher_forcing import replay
from blendin_local.replay.text import _byte_bounds
from blendin_local.settings import GenerationSettings

from fakes import cross_pair, fake_base, same_tokenizer_pair

CONV = Conversation.single("What is a b c?")


def top100(**kw: object) -> GenerationSettings:
    return GenerationSettings(support="top100", max_tokens=30, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize(("gamma", "alpha"), [(0.4, None), (0.7, 0.5), (2.0, None)])
def test_replay_of_a_greedy_top100_generation_matches_at_every_step(batched, gamma, alpha) -> None:
    # one tokenizer: every string the blend picks is a base token, so the text's steps are the
    # generation's (with two tokenizers a guide string like "abc" is two base steps)
    pair = same_tokenizer_pair(1.5, 3.0)
    settings = top100(gamma=gamma, alpha=alpha)
    gen = generate(pair, CONV, settings)
    steps = list(gen)
    text = gen.result.text
    rows = list(replay(pair, CONV, settings, text, batched=batched))
    assert "".join(r.text for r in rows) == text
    # the fake tokenizer segments the text as generation picked it: one row per generated step
    assert [r.text for r in rows] == [s.piece.decode() for s in steps]
    assert all(r.matches for r in rows), [(r.index, r.text, r.chosen_text) for r in rows]
    assert [r.intervened for r in rows] == [s.intervened for s in steps]
    assert [r.alpha for r in rows] == pytest.approx([s.alpha for s in steps])
    assert [r.b for r in rows] == pytest.approx([s.b for s in steps], abs=1e-6)


def test_batched_and_stepwise_text_replay_agree_on_a_foreign_answer() -> None:
    pair = cross_pair(1.0, 4.0)
    settings = top100(gamma=0.5)
    text = " the cab is a b c, the end"
    batched = list(replay(pair, CONV, settings, text))
    stepwise = list(replay(pair, CONV, settings, text, batched=False))
    assert batched == stepwise
    assert any(r.intervened for r in batched) and any(not r.matches for r in batched)
    assert all(r.provenance == "base" for r in batched if not r.intervened)
    assert all(r.token == -1 and r.chosen == -1 for r in batched)


def test_text_replay_refusals() -> None:
    with pytest.raises(UsageError, match="supports methods base, blendin, ensemble"):
        list(replay(cross_pair(), CONV, top100(method="nudging"), "a b"))
    with pytest.raises(UsageError, match="not token ids"):
        list(replay(cross_pair(), CONV, top100(), [5, 6]))
    with pytest.raises(UsageError, match="empty"):
        list(replay(cross_pair(), CONV, top100(), ""))


def test_step_bounds_start_at_the_prompt_end_and_skip_the_inside_of_a_character() -> None:
    base = fake_base()
    pieces = base.pieces()
    prefix, cont = b"Answer:", b" the ab"
    full = base.tokenize(prefix + cont, add_bos=False)
    assert _byte_bounds(full, pieces, prefix, cont, skip_first=False) == [0, 4, 6, 7]  # " the", " a", "b"
    # a token crossing the seam: the first step is the rest of it
    prefix, cont = b"Answer: t", b"he a"
    full = base.tokenize(prefix + cont, add_bos=False)
    bounds = _byte_bounds(full, pieces, prefix, cont, skip_first=False)
    assert bounds[0] == 0 and bounds[-1] == len(cont)
    # two bytes of one character never split into two steps
    fake_pieces = [b"\xc3", b"\xa9", b"a"]
    assert _byte_bounds([2, 0, 1], fake_pieces, b"a", b"\xc3\xa9", skip_first=False) == [0, 2]
