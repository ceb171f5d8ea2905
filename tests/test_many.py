"""Many answers at once (``many.generate_many``) on the fake engine: batched greedy answers equal
one-at-a-time answers exactly (the fake's logits depend on each sequence's own tokens only), the
scheduler really shares decodes, and one answer's failure ends only that answer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from blendin_local import generate_many
from blendin_local.errors import ContextOverflowError, UsageError
from blendin_local.generation.generate import generate
from blendin_local.generation.many import Finished
from blendin_local.generation.steps import Step, StopReason
from blendin_local.methods import METHODS
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes import FakeGroup, cross_pair, fake_guide

CONVERTED = ("base", "blendin", "ensemble", "proxy", "guide", "nudging")
QUESTIONS = ["What is a b c?", "the", "Say the a b c twice, then stop.", "a", "b c the ab",
             "Why?", "the the the the the", "c", "Name a b.", "ab ab"]
TIMINGS = {"t_base", "t_guide", "t_blend"}


def pair_for(method: str) -> ModelPair:
    pair = cross_pair()
    if method == "proxy":
        pair.anti = fake_guide(salt="anti")
    return pair


def settings(method: str, **kw: object) -> GenerationSettings:
    kw = {"gamma": 0.6, "max_tokens": 24, **kw}
    return GenerationSettings(method=method, **kw)  # type: ignore[arg-type]


def record(step: Step) -> dict[str, object]:
    return {k: v for k, v in step.to_record().items() if k not in TIMINGS}


def one_at_a_time(pair: ModelPair, convs: list[Conversation], s: GenerationSettings):
    out = []
    for conv in convs:
        gen = generate(pair, conv, s)
        steps = [record(x) for x in gen]
        out.append((steps, gen.result))
    return out


def batched(pair: ModelPair, convs: list[Conversation], s: GenerationSettings, batch: int):
    many = generate_many(pair, convs, s, batch=batch)
    steps: list[list[dict[str, object]]] = [[] for _ in convs]
    for index, step in many:
        steps[index].append(record(step))
    return many, steps


def same_result(a, b) -> None:
    keys = ("text", "tokens", "stop_reason", "interventions", "guide_changed", "mean_alpha",
            "prompt_tokens", "by_provenance")
    assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}


@pytest.mark.parametrize("method", CONVERTED)
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
def test_batched_greedy_answers_equal_one_at_a_time(method: str, batch: int) -> None:
    check_batched_equals_one_at_a_time(method, batch)


@pytest.mark.parametrize("method", ["blendin", "ensemble"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_batched_top100_answers_equal_one_at_a_time(method: str, batch: int) -> None:
    """The string blend's base and guide catch-ups are requests too (TextSync.requests)."""
    check_batched_equals_one_at_a_time(method, batch, support="top100")


def check_batched_equals_one_at_a_time(method: str, batch: int, **kw: object) -> None:
    convs = [Conversation.single(q) for q in QUESTIONS]
    s = settings(method, stop=("h",), **kw)  # answers of many lengths: EOS, stop string, token limit
    expected = one_at_a_time(pair_for(method), convs, s)
    pair = pair_for(method)
    many, steps = batched(pair, convs, s, batch)
    assert many.batched and not many.note
    for i, (want_steps, want) in enumerate(expected):
        assert steps[i] == want_steps, f"conversation {i}"
        result = many.results[i]
        assert result is not None
        same_result(result, want)
    # answers of different lengths: some ended early, so slots were refilled
    assert len({r.tokens for _, r in expected}) > 1
    assert {r.stop_reason for _, r in expected} >= {StopReason.MAX_TOKENS}


@pytest.mark.parametrize("method", ["base", "blendin"])
def test_the_scheduler_shares_decodes_between_answers(method: str) -> None:
    convs = [Conversation.single(q) for q in QUESTIONS[:8]]
    pair = pair_for(method)
    many, _ = batched(pair, convs, settings(method, max_tokens=16), 4)
    group = pair.base._group  # type: ignore[union-attr]
    assert isinstance(group, FakeGroup)
    tokens = sum(r.tokens for r in many.results if r is not None)
    assert max(group.batch_sizes) == 4
    assert group.decodes < tokens / 2  # one decode per token would be one at a time
    if method == "blendin":  # catch-ups at interventions share guide decodes too
        guide_group = pair.guide._group  # type: ignore[union-attr]
        assert max(guide_group.batch_sizes) > 1


def test_answers_at_an_intervention_wait_for_the_guide_then_join_the_base_decode() -> None:
    """One base decode per token for all answers: catch-ups run first, never the base for a few."""
    convs = [Conversation.single(q) for q in QUESTIONS[:8]]
    pair = pair_for("blendin")
    many, _ = batched(pair, convs, settings("blendin", max_tokens=16, gamma=0.9), 8)
    interventions = sum(r.interventions for r in many.results if r is not None)
    assert interventions > 40  # most steps consult the guide
    base_group = pair.base._group  # type: ignore[union-attr]
    assert base_group.decodes <= 16  # the prompts, then one per token: 15 more at most


def test_a_batch_of_base_answers_opens_no_guide_context() -> None:
    pair = cross_pair()
    batched(pair, [Conversation.single(q) for q in QUESTIONS[:4]], settings("base"), 4)
    assert getattr(pair.base, "_group", None) is not None
    assert getattr(pair.guide, "_group", None) is None  # no KV of 4 guide sequences for nothing


def test_answers_of_different_settings_in_one_batch_equal_one_at_a_time() -> None:
    """An eval's grid is one batch: base, guide, blendin at two γ share the slots."""
    convs = [Conversation.single(q) for q in QUESTIONS[:5]]
    grid = [settings("base"), settings("blendin", gamma=0.3), settings("guide"),
            settings("blendin", gamma=0.9)]
    jobs = [(c, s) for s in grid for c in convs]
    expected = [one_at_a_time(cross_pair(), [c], s)[0] for c, s in jobs]
    pair = cross_pair()
    many = generate_many(pair, [c for c, _ in jobs], [s for _, s in jobs], batch=6)
    steps: list[list[dict[str, object]]] = [[] for _ in jobs]
    for index, step in many:
        steps[index].append(record(step))
    assert many.batched and not many.note
    for i, (want_steps, want) in enumerate(expected):
        assert steps[i] == want_steps, f"job {i}"
        same_result(many.results[i], want)
    assert max(pair.base._group.batch_sizes) == 6  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["base", "blendin"])
def test_a_full_context_ends_only_its_own_answer(method: str) -> None:
    """The base's context fills: that answer stops (context-full); the guide's cannot take a
    catch-up: that answer alone ends with the error that one answer at a time raises."""
    long_q = "the a b c " * 12
    convs = [Conversation.single(q) for q in ["a", long_q, "b c", "Why?", "c"]]
    s = settings(method, max_tokens=40)

    def small_pair() -> ModelPair:
        pair = cross_pair()
        for e in (pair.base, pair.guide):
            e.n_ctx = 150  # the short prompts are ~80 tokens, the long one 126
        return pair

    expected: list[object] = []
    for conv in convs:
        try:
            expected.append(one_at_a_time(small_pair(), [conv], s)[0])
        except ContextOverflowError as exc:
            expected.append(exc)
    many, steps = batched(small_pair(), convs, s, 4)
    ended = [e for e in expected if isinstance(e, ContextOverflowError)
             or e[1].stop_reason is StopReason.CONTEXT_FULL]  # type: ignore[index]
    assert len(ended) == 1
    for i, want in enumerate(expected):
        if isinstance(want, ContextOverflowError):
            assert isinstance(many.errors[i], ContextOverflowError)
            assert many.results[i] is None
        else:
            assert steps[i] == want[0]  # type: ignore[index]
            same_result(many.results[i], want[1])  # type: ignore[index]


def test_a_prompt_too_long_is_an_error_of_that_answer_alone() -> None:
    convs = [Conversation.single(q) for q in ["a", "the a b c " * 40, "b c"]]
    pair = cross_pair()
    pair.base.n_ctx = 150  # type: ignore[union-attr]
    many = generate_many(pair, convs, settings("base"), batch=3)
    finished = [e for e in many.stream() if isinstance(e, Finished)]
    assert sorted(f.index for f in finished) == [0, 1, 2]
    assert isinstance(many.errors[1], ContextOverflowError) and many.results[1] is None
    assert many.results[0] is not None and many.results[2] is not None
    pair = cross_pair()
    pair.base.n_ctx = 150  # type: ignore[union-attr]
    with pytest.raises(ContextOverflowError):  # run() raises it once the others are done
        generate_many(pair, convs, settings("base"), batch=2).run()


def test_results_come_back_in_input_order_whatever_finishes_first() -> None:
    convs = [Conversation.single(q) for q in QUESTIONS]
    s = settings("base", max_tokens=30)
    want = [r.text for _, r in one_at_a_time(cross_pair(), convs, s)]
    many = generate_many(cross_pair(), convs, s, batch=3)
    order = [e.index for e in many.stream() if isinstance(e, Finished)]
    assert order != sorted(order)  # short answers finished first and freed their slots
    assert [r.text for r in many.results if r is not None] == want


def test_nudges_share_guide_and_base_decodes_between_answers() -> None:
    """Nudging's guide drafts and word checks are requests: at B = 4 the guide's draft tokens and
    the base's checks of several answers run in shared decodes."""
    convs = [Conversation.single(q) for q in QUESTIONS[:8]]
    pair = pair_for("nudging")
    many, steps = batched(pair, convs, settings("nudging", max_tokens=16), 4)
    assert many.batched and not many.note
    assert any(step["provenance"] == "guide" for answer in steps for step in answer)
    for model in (pair.base, pair.guide):
        assert max(model._group.batch_sizes) > 1  # type: ignore[union-attr]


def test_a_method_that_evaluates_by_itself_runs_one_at_a_time_with_a_note(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every method batches now; one whose step source evaluates by itself (no ``driven``
    supports: here nudging made so) still runs, one answer at a time, and the batch says so."""
    monkeypatch.setitem(METHODS, "nudging", replace(METHODS["nudging"], driven=frozenset()))
    method = "nudging"
    convs = [Conversation.single(q) for q in QUESTIONS[:3]]
    s = settings(method)
    expected = one_at_a_time(cross_pair(), convs, s)
    many = generate_many(cross_pair(), convs, s, batch=4)
    assert not many.batched and "one answer at a time" in many.note
    results = many.run()
    assert [r.text for r in results] == [r.text for _, r in expected]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_batch_size_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError, match="batch must be an integer >= 1"):
        generate_many(cross_pair(), [Conversation.single("a")], settings("base"), batch=bad)  # type: ignore[arg-type]


def test_cancel_ends_every_answer_and_starts_no_more() -> None:
    convs = [Conversation.single(q) for q in QUESTIONS]
    many = generate_many(cross_pair(), convs, settings("base", max_tokens=30), batch=2)
    seen = 0
    for _index, _step in many:
        seen += 1
        if seen == 5:
            many.cancel()
    done = [r for r in many.results if r is not None]
    assert len(done) == 2 and all(r.stop_reason is StopReason.CANCELLED for r in done)
