"""The decoding loop on fake in-memory models: the properties spec §2 promises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blendin_local import blend
from blendin_local.errors import ContextOverflowError, UsageError
from blendin_local.generation.generate import generate
from blendin_local.generation.sampling import SamplingSettings
from blendin_local.generation.steps import Provenance, StopReason
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes import (
    BASE_PIECES,
    GUIDE_PIECES,
    FakeEngine,
    cross_pair,
    fake_base,
    pair_of,
    peaked,
    same_tokenizer_pair,
)

CONV = Conversation.single("What is a b c?")
RAW = Conversation.single("the a b", chat=False)


def run(pair: ModelPair, conv: Conversation = CONV, **kw: object):
    gen = generate(pair, conv, GenerationSettings(**kw))  # type: ignore[arg-type]
    steps = list(gen)
    return steps, gen.result


def tokens(steps) -> list[int]:
    return [s.token for s in steps]


def test_gamma_zero_gives_exactly_the_base_tokens() -> None:
    base_steps, _ = run(cross_pair(), method="base", max_tokens=30)
    steps, result = run(cross_pair(), method="blendin", gamma=0.0, max_tokens=30)
    assert tokens(steps) == tokens(base_steps)
    assert result.interventions == 0
    assert all(s.provenance is Provenance.BASE for s in steps)


def test_gamma_above_one_intervenes_at_every_step() -> None:
    steps, result = run(cross_pair(), gamma=1.01, max_tokens=30)
    assert steps and all(s.intervened for s in steps)
    assert result.interventions == result.tokens == len(steps)
    assert all(s.g is not None and s.alpha is not None for s in steps)


def test_alpha_zero_keeps_the_base_tokens_even_when_every_step_intervenes() -> None:
    base_steps, _ = run(cross_pair(), method="base", max_tokens=30)
    steps, result = run(cross_pair(), gamma=2.0, alpha=0.0, max_tokens=30)
    assert tokens(steps) == tokens(base_steps)
    assert result.interventions == len(steps)
    assert all(s.provenance is Provenance.BLEND_AGREE for s in steps)


def test_same_tokenizer_alpha_one_takes_the_guides_greedy_token() -> None:
    pair = same_tokenizer_pair()
    assert pair.projection is not None and pair.projection.identity
    steps, _ = run(pair, gamma=2.0, alpha=1.0, max_tokens=20, guide_can_stop=False)
    guide = pair.guide
    assert guide is not None
    # Re-evaluate the guide on its prompt + the text before each step: its argmax is the token.
    from blendin_local.pair import prompt_for

    gp = prompt_for(guide, CONV, role="guide")
    y = b""
    eog = guide.eog_ids()
    for s in steps:
        guide.rollback(0)
        guide.eval(guide.tokenize(gp.text + y, add_bos=gp.add_bos))
        p = blend.softmax(guide.logits())
        p[list(eog)] = 0
        assert s.token == int(np.argmax(p))
        y += b"" if s.token in guide.control_ids() else s.piece  # control tokens add no text


def test_guide_end_of_turn_can_end_the_answer_only_when_allowed() -> None:
    base = fake_base()
    # A guide that always wants to end its turn.
    n = len(GUIDE_PIECES)
    guide = FakeEngine(GUIDE_PIECES, lambda ctx: peaked(n, {0: 0.99}), eos_id=0, name="ender")
    pair = pair_of(base, guide)
    steps, result = run(pair, RAW, gamma=2.0, alpha=1.0, max_tokens=10)
    assert result.stop_reason is StopReason.GUIDE_EOS and len(steps) == 1
    steps, result = run(pair, RAW, gamma=2.0, alpha=1.0, max_tokens=10, guide_can_stop=False)
    assert result.stop_reason is not StopReason.GUIDE_EOS
    assert base.eos_id not in tokens(steps)


def test_stop_string_cuts_the_answer_and_is_never_shown() -> None:
    # A base that writes "ab" forever: stop on "bab".
    n = len(BASE_PIECES)
    a, b = BASE_PIECES.index(b"a"), BASE_PIECES.index(b"b")

    def logits(ctx: tuple[int, ...]) -> np.ndarray:
        return peaked(n, {b if ctx[-1] == a else a: 0.9})

    base = FakeEngine(BASE_PIECES, logits, eos_id=0, bos_id=1)
    steps, result = run(ModelPair(base=base), RAW, method="base", max_tokens=50, stop=("bab",))
    assert result.stop_reason is StopReason.STOP_STRING
    shown = "".join(s.text for s in steps)
    assert shown == result.text and "bab" not in shown
    assert result.text == "a"  # "a" + "b" + "a" + "b" contains "bab" from offset 1


def test_max_tokens_and_the_joined_text_equals_the_result() -> None:
    steps, result = run(cross_pair(), max_tokens=7, guide_can_stop=False)
    assert result.tokens == len(steps) <= 7
    assert "".join(s.text for s in steps) == result.text


def test_context_full_stops_cleanly() -> None:
    base = fake_base(n_ctx=40)
    pair = ModelPair(base=base)
    steps, result = run(pair, RAW, method="base", max_tokens=500)
    if result.stop_reason is not StopReason.EOS:
        assert result.stop_reason is StopReason.CONTEXT_FULL
        assert len(base.tokens) == base.n_ctx


def test_prompt_longer_than_the_context_is_a_clear_error() -> None:
    pair = ModelPair(base=fake_base(n_ctx=16))
    with pytest.raises(ContextOverflowError, match="context of 16"):
        run(pair, Conversation.single("a " * 40, chat=False), method="base")


def test_cancel_stops_before_the_next_token_and_keeps_the_text() -> None:
    gen = generate(cross_pair(), CONV, GenerationSettings(max_tokens=100, guide_can_stop=False))
    seen = []
    for step in gen:
        seen.append(step)
        if len(seen) == 3:
            gen.cancel()
    assert len(seen) == 3
    assert gen.result.stop_reason is StopReason.CANCELLED
    assert gen.result.text == "".join(s.text for s in seen)


def test_seeded_sampling_is_reproducible() -> None:
    s1 = SamplingSettings(temperature=1.0, seed=7)
    a, _ = run(cross_pair(), max_tokens=25, sampling=s1)
    b, _ = run(cross_pair(), max_tokens=25, sampling=s1)
    c, _ = run(cross_pair(), max_tokens=25, sampling=SamplingSettings(temperature=1.0, seed=8))
    assert tokens(a) == tokens(b)
    assert tokens(a) != tokens(c)


def test_tally_matches_the_steps_and_trace_records_are_json() -> None:
    gen = generate(cross_pair(1.0, 3.0), CONV,
                   GenerationSettings(max_tokens=25, diagnostics=True, guide_can_stop=False))
    steps = list(gen)
    r = gen.result
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.provenance.value] = counts.get(s.provenance.value, 0) + 1
        rec = json.loads(json.dumps(s.to_record()))
        assert rec["provenance"] == s.provenance.value
        if s.intervened:
            assert len(rec["guide_top"]) == 5 and s.overlap10 is not None
        assert len(rec["base_top"]) == 5
    assert counts == r.by_provenance
    assert r.interventions == sum(s.intervened for s in steps)
    assert r.guide_changed == counts.get("blend-guide", 0)
    d = r.to_dict()
    assert d["tokens"] == len(steps) and 0 <= d["intervention_rate"] <= 1


def test_ensemble_blends_every_step_at_one_half() -> None:
    steps, r = run(cross_pair(), method="ensemble", max_tokens=10, guide_can_stop=False)
    assert all(s.intervened and s.alpha == 0.5 for s in steps)


def test_proxy_with_the_guide_as_its_own_anti_expert_is_the_base() -> None:
    pair = cross_pair()
    pair.anti = pair.guide
    base_steps, _ = run(cross_pair(), method="base", max_tokens=15)
    steps, _ = run(pair, method="proxy", max_tokens=15)
    assert tokens(steps) == tokens(base_steps)


def test_methods_refuse_a_missing_model() -> None:
    with pytest.raises(UsageError, match="guide"):
        run(ModelPair(base=fake_base()), method="blendin")
    with pytest.raises(UsageError, match="anti-expert"):
        run(cross_pair(), method="proxy")


def test_guide_method_uses_only_the_guide() -> None:
    pair = cross_pair()
    steps, r = run(pair, method="guide", max_tokens=10)
    assert all(s.provenance is Provenance.GUIDE and s.b is None for s in steps)
    assert pair.base is not None and pair.base.tokens == []  # type: ignore[attr-defined]


def test_nudging_writes_guide_words_when_the_base_is_unsure() -> None:
    steps, r = run(cross_pair(0.5, 3.0), method="nudging", gamma=0.9, max_tokens=30)
    assert any(s.provenance is Provenance.GUIDE for s in steps)
    assert r.interventions >= 1 and r.interventions_are_events
    assert "".join(s.text for s in steps) == r.text


def test_nudging_with_gamma_zero_is_the_base() -> None:
    base_steps, _ = run(cross_pair(), method="base", max_tokens=20)
    steps, _ = run(cross_pair(), method="nudging", gamma=0.0, max_tokens=20)
    assert r_text(steps) == r_text(base_steps)


def r_text(steps) -> str:
    return "".join(s.text for s in steps)


def test_guide_only_runs_at_intervention_steps_and_catches_up_in_batches() -> None:
    pair = cross_pair(2.0, 3.0)
    steps, r = run(pair, gamma=0.5, max_tokens=40, guide_can_stop=False)
    guide = pair.guide
    assert isinstance(guide, FakeEngine)
    assert 0 < r.interventions < len(steps)
    # one eval call per intervention at most (prompt + catch-up in one batch each time)
    assert guide.eval_calls <= r.interventions


# --- KV reuse across requests (chat, serve) -----------------------------------------------------

def chat_turns(pair: ModelPair, *, reuse: bool, method: str, support: str = "full"):
    """Three chat turns on one pair: the steps of each reply and the tokens the models evaluated."""
    from blendin_local.prompts import Message, chat_conversation

    settings = GenerationSettings(method=method, support=support, max_tokens=12, reuse_cache=reuse,
                                  stop=("\n",))
    messages: list[Message] = []
    out = []
    for question in ("the a b", "a c the", "b b a"):
        messages.append(Message("user", question))
        before = sum(e.evaluated_tokens for e in (pair.base, pair.guide) if e is not None)
        gen = generate(pair, chat_conversation(messages, "sys"), settings)
        steps = list(gen)
        after = sum(e.evaluated_tokens for e in (pair.base, pair.guide) if e is not None)
        out.append((tokens(steps), after - before, gen.cached_tokens, gen.result.prompt_tokens))
        messages.append(Message("assistant", gen.result.text))
    return out


@pytest.mark.parametrize(("method", "support"), [
    ("blendin", "full"), ("base", "full"), ("guide", "full"), ("nudging", "full"),
    ("blendin", "top100"),
])
def test_reusing_the_cache_evaluates_less_and_changes_no_token(method: str, support: str) -> None:
    # Fake logits depend on the context only (no batch-shape effects), so the tokens must match.
    fresh = chat_turns(cross_pair(1.0, 3.0), reuse=False, method=method, support=support)
    reused = chat_turns(cross_pair(1.0, 3.0), reuse=True, method=method, support=support)
    assert [t for t, *_ in reused] == [t for t, *_ in fresh]
    assert all(cached == 0 for _, _, cached, _ in fresh)
    assert reused[0][1] == fresh[0][1]  # nothing to reuse on the first turn
    for (_, n_fresh, _, prompt), (_, n_reused, cached, _) in zip(fresh[1:], reused[1:], strict=True):
        assert n_reused < n_fresh
        assert 0 < cached < prompt


def test_without_reuse_every_generation_starts_from_empty_caches() -> None:
    pair = cross_pair()
    run(pair, max_tokens=5)
    evaluated = pair.base.evaluated_tokens  # type: ignore[union-attr]
    gen = generate(pair, CONV, GenerationSettings(max_tokens=5))
    list(gen)
    assert gen.cached_tokens == 0
    assert pair.base.evaluated_tokens - evaluated >= gen.result.prompt_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["blendin", "base", "guide", "nudging"])
def test_a_prompt_repeated_after_a_two_token_answer_reads_no_stale_logits(method: str) -> None:
    # The first answer leaves prompt + its first token cached; reuse rolls that token back, so the
    # caches hold exactly the prompt while the logits row is still the dropped token's.
    fresh, _ = run(cross_pair(), method=method, max_tokens=6)
    pair = cross_pair()
    run(pair, method=method, max_tokens=2, reuse_cache=True)
    again, _ = run(pair, method=method, max_tokens=6, reuse_cache=True)
    assert tokens(again) == tokens(fresh)


def test_after_an_eval_fails_mid_answer_the_next_generation_is_right() -> None:
    fresh, _ = run(cross_pair(), max_tokens=6)
    pair = cross_pair()
    base = pair.base
    assert isinstance(base, FakeEngine)
    base.fail_at_call = 3  # prompt, first token, then the second token's eval fails
    with pytest.raises(RuntimeError, match="llama_decode"):
        run(pair, max_tokens=6, reuse_cache=True)
    again, _ = run(pair, max_tokens=6, reuse_cache=True)
    assert tokens(again) == tokens(fresh)
