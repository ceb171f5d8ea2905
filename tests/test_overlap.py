"""The guide's catch-ups beside the base's decode (``generation.overlap``): the same answers as
without, every guide evaluation off the caller's thread, the policy, failures and Ctrl-C."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from blendin_local import generate_many
from blendin_local.engines.base import Eval
from blendin_local.errors import ContextOverflowError
from blendin_local.generation import overlap
from blendin_local.generation.generate import generate
from blendin_local.generation.overlap import ENV, Overlap, overlap_allowed, run_together
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes import FakeEngine, cross_pair, fake_guide, same_tokenizer_pair

QUESTIONS = ["What is a b c?", "the", "Say the a b c twice, then stop.", "a", "b c the ab", "Why?"]
TIMINGS = {"t_base", "t_guide", "t_blend"}


def answers(pair: ModelPair, s: GenerationSettings, batch: int | None) -> list[object]:
    """Each answer's step records (timings left out) and end, one at a time (None) or batched."""
    convs = [Conversation.single(q) for q in QUESTIONS]
    out: list[object] = []
    if batch is None:
        for conv in convs:
            try:
                gen = generate(pair, conv, s)
                steps = [{k: v for k, v in x.to_record().items() if k not in TIMINGS} for x in gen]
                out.append((steps, gen.result.text, gen.result.stop_reason))
            except ContextOverflowError as exc:
                out.append(type(exc))
        return out
    many = generate_many(pair, convs, s, batch=batch)
    steps: list[list[dict[str, object]]] = [[] for _ in convs]
    for i, step in many:
        steps[i].append({k: v for k, v in step.to_record().items() if k not in TIMINGS})
    for i, result in enumerate(many.results):
        error = many.errors[i]
        out.append(type(error) if error is not None else
                   (steps[i], result.text, result.stop_reason))  # type: ignore[union-attr]
    return out


def make_pair(method: str, kind: str = "cross", guide_ctx: int | None = None) -> ModelPair:
    pair = cross_pair() if kind == "cross" else same_tokenizer_pair()
    if method == "proxy":
        pair.anti = fake_guide(salt="anti")
    if guide_ctx is not None:
        assert pair.guide is not None
        pair.guide.n_ctx = guide_ctx
    return pair


@pytest.mark.parametrize(("method", "kind"), [("blendin", "cross"), ("ensemble", "cross"),
                                              ("proxy", "cross"), ("blendin", "same")])
@pytest.mark.parametrize("batch", [None, 1, 3, 8])
def test_answers_with_the_guide_beside_the_base_equal_those_without(
        monkeypatch: pytest.MonkeyPatch, method: str, batch: int | None, kind: str) -> None:
    s = GenerationSettings(method=method, gamma=0.6, max_tokens=24, stop=("h",))
    monkeypatch.setenv(ENV, "off")
    want = answers(make_pair(method, kind), s, batch)
    monkeypatch.setenv(ENV, "on")
    assert answers(make_pair(method, kind), s, batch) == want
    assert any(isinstance(a, tuple) and a[0] for a in want)


@pytest.mark.parametrize("batch", [None, 4])
def test_a_guide_context_too_small_fails_the_same_beside_the_base(
        monkeypatch: pytest.MonkeyPatch, batch: int | None) -> None:
    """The catch-up done ahead of need is dropped where it does not fit; the answer meets the
    error where it needs the guide, as without overlap."""
    s = GenerationSettings(method="blendin", gamma=0.9, max_tokens=40)
    monkeypatch.setenv(ENV, "off")
    want = answers(make_pair("blendin", guide_ctx=60), s, batch)
    assert ContextOverflowError in want
    monkeypatch.setenv(ENV, "on")
    assert answers(make_pair("blendin", guide_ctx=60), s, batch) == want


def threads_of_evals(engine: FakeEngine) -> list[str]:
    """Record the thread of every evaluation of ``engine`` (and of its sequence views)."""
    names: list[str] = []
    logits_fn = engine._logits_fn

    def recording(ids: tuple[int, ...]) -> np.ndarray:
        names.append(threading.current_thread().name)
        return logits_fn(ids)

    engine._logits_fn = recording
    return names


@pytest.mark.parametrize("batch", [None, 4])
def test_beside_the_base_every_guide_evaluation_runs_in_the_worker(
        monkeypatch: pytest.MonkeyPatch, batch: int | None) -> None:
    """Interventions find the guide caught up: its prompt and every catch-up ran beside the base's
    evaluations, none in the caller's thread; the base's all ran in the caller's."""
    monkeypatch.setenv(ENV, "on")
    pair = make_pair("blendin")
    assert pair.base is not None and pair.guide is not None
    base_threads, guide_threads = threads_of_evals(pair.base), threads_of_evals(pair.guide)
    s = GenerationSettings(method="blendin", gamma=0.9, max_tokens=24)
    got = answers(pair, s, batch)
    assert any(isinstance(a, tuple) and any(x["intervened"] for x in a[0]) for a in got)
    caller = threading.current_thread().name
    assert guide_threads and all(t.startswith("blendin-beside") for t in guide_threads)
    assert base_threads and set(base_threads) == {caller}


def test_the_guide_time_beside_the_base_is_counted_as_guide_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "on")
    pair = make_pair("blendin")
    assert pair.guide is not None
    slow = pair.guide._logits_fn
    pair.guide._logits_fn = lambda ids: (time.sleep(0.002), slow(ids))[1]
    result = generate(pair, Conversation.single("Why?"),
                      GenerationSettings(method="blendin", gamma=0.9, max_tokens=8)).run()
    assert result.t_guide >= 8 * 0.002


def test_without_overlap_the_guide_waits_for_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lazy default where models share cores: no guide evaluation at all while the gate stays
    shut (γ = 0), and never in a worker."""
    monkeypatch.setenv(ENV, "off")
    pair = make_pair("blendin")
    assert pair.guide is not None
    guide_threads = threads_of_evals(pair.guide)
    generate(pair, Conversation.single("Why?"), GenerationSettings(method="blendin", gamma=0.0,
                                                                   max_tokens=8)).run()
    assert guide_threads == []


class Threads:
    """An engine's CPU use as ``overlap_allowed`` reads it."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def cpu_threads(self) -> int | None:
        return self.threads


@pytest.mark.parametrize(("base", "guide", "cores", "allowed"), [
    (1, 1, 2, True), (2, 2, 4, True), (2, 1, 2, False), (4, 4, 4, False),
    (None, 1, 8, False),  # a model on a GPU (or a server): left sequential
    (1, None, 8, False),
])
def test_overlap_by_default_only_where_both_models_fit_the_cores(
        monkeypatch: pytest.MonkeyPatch, base: int | None, guide: int | None, cores: int,
        allowed: bool) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(overlap, "cpu_count", lambda: cores)
    pair = ModelPair(base=Threads(base), guide=Threads(guide))  # type: ignore[arg-type]
    assert overlap_allowed(pair) is allowed
    monkeypatch.setenv(ENV, "on")
    assert overlap_allowed(pair)
    monkeypatch.setenv(ENV, "off")
    assert not overlap_allowed(pair)


def test_overlap_needs_two_models_and_engines_that_tell_their_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(overlap, "cpu_count", lambda: 64)
    assert not overlap_allowed(ModelPair(base=Threads(1)))  # type: ignore[arg-type]
    assert not overlap_allowed(cross_pair())  # fakes do not say what they spin


def test_ctrl_c_in_the_decode_waits_for_the_work_beside_it() -> None:
    """The next answer must not find the guide's context still decoding."""
    guide = fake_guide()
    done = threading.Event()
    slow = guide._logits_fn

    def logits(ids: tuple[int, ...]) -> np.ndarray:
        time.sleep(0.2)
        done.set()
        return slow(ids)

    guide._logits_fn = logits

    def catch_up():
        yield Eval(guide, [2])

    def interrupted() -> None:
        raise KeyboardInterrupt

    runner = Overlap()
    with pytest.raises(KeyboardInterrupt):
        runner.run(interrupted, [Eval(guide, [3], beside=lambda: [catch_up()])])
    assert done.is_set() and guide.tokens == [2]
    runner.close()


def test_work_beside_the_base_that_fails_is_dropped_not_raised() -> None:
    guide = fake_guide()
    guide.fail_at_call = 1
    later = fake_guide()

    def catch_up(engine: FakeEngine, ids: list[int]):
        yield Eval(engine, ids)
        yield Eval(engine, [2])

    def too_long():
        yield Eval(later, [2] * (later.n_ctx + 1))

    seconds = run_together([catch_up(guide, [3]), too_long()])
    assert seconds >= 0.0
    assert guide.tokens == [] and later.tokens == []  # nothing evaluated after the failures


@pytest.mark.integration
def test_a_llama_engine_tells_the_threads_it_spins(tiny_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
    """The most threads of its single-token and batch decodes; its sequence views decode batches
    with the single-token threads; two one-thread models fit two cores, two-thread ones do not."""
    from blendin_local.engines.llama import LlamaEngine

    engines = [LlamaEngine(tiny_gguf, n_ctx=64, n_threads=n) for n in (1, 2)]
    try:
        one, two = engines
        assert one.cpu_threads() == 1 and two.cpu_threads() == 2
        assert two.sequences(2)[0].cpu_threads() == 2
        monkeypatch.delenv(ENV, raising=False)
        monkeypatch.setattr(overlap, "cpu_count", lambda: 2)
        assert overlap_allowed(ModelPair(base=one, guide=one.sequences(2)[1]))
        assert not overlap_allowed(ModelPair(base=two, guide=one))
    finally:
        for engine in engines:
            engine.close()
