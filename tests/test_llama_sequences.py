"""The multi-sequence llama.cpp engine (``LlamaEngine.sequences``): each view is an ``Engine`` with
its own KV cache; ``eval_many`` decodes several sequences in one ``llama_decode``.

Tiny-model comparisons are exact where the batch shapes are the same; where they differ (several
sequences in one batch vs one alone) llama.cpp's arithmetic may move logits in the last bits, so
they use the tolerance of ``test_llama_engine`` (measured ~1e-6 on the tiny F32 model).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_llama_engine import TINY_BATCH_SHAPE_TOL, maxdiff, random_ids

from blendin_local.engines.base import set_tokens
from blendin_local.errors import ContextOverflowError, UsageError
from blendin_local.generation.generate import generate
from blendin_local.generation.many import generate_many, pair_sequences
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

# Gemma-3-270M Q4_K_M: 4 prompts decoded in one batch vs each alone: max |Δlogit| measured 1.13
# (1 thread; quantised matmuls take other kernels and summation orders for another batch shape).
GEMMA_BATCH_TOL = 1.5
NEAR_TIE = 0.1  # top-2 gap under which a batched answer may take the other token (seen: <= 0.052)
# |b - γ| under which the gate may open in one run and not the other (seen: b 0.381 alone, 0.426
# batched, at γ 0.4: batch shapes moved the base's top-1 probability by a few hundredths)
NEAR_GATE = 0.05


def single_logits(engine, ids) -> np.ndarray:
    engine.rollback(0)
    engine.eval(ids)
    return engine.logits().copy()


@pytest.mark.parametrize("unified_kv", [False, True], ids=["per-stream", "unified"])
def test_each_view_equals_the_single_engine_alone(tiny_engine, unified_kv: bool):
    prompt = random_ids(1, 30, bos=True)
    ref = single_logits(tiny_engine, prompt)
    views = tiny_engine.sequences(3, unified_kv=unified_kv)
    assert [v.seq for v in views] == [0, 1, 2] and views[0].n_ctx == tiny_engine.n_ctx
    views[1].eval(prompt)  # same chunking as the single engine (n_batch 16): exact
    assert maxdiff(views[1].logits(), ref) == 0.0
    assert views[1].tokens == prompt and views[0].tokens == []


@pytest.mark.parametrize("unified_kv", [False, True], ids=["per-stream", "unified"])
def test_eval_many_gives_each_sequence_its_own_logits(tiny_engine, unified_kv: bool):
    prompts = [random_ids(s, n, bos=True) for s, n in ((2, 5), (3, 11), (4, 3))]
    steps = [random_ids(10 + s, 4) for s in range(3)]
    refs = []
    for p, more in zip(prompts, steps, strict=True):
        single_logits(tiny_engine, p)
        for t in more:
            tiny_engine.eval([t])
        refs.append(tiny_engine.logits().copy())
    views = tiny_engine.sequences(3, unified_kv=unified_kv)
    group = views[0].group
    group.eval_many(list(zip(views, prompts, strict=True)))  # 19 tokens: two chunks of 16
    for k in range(4):
        before = group.decodes
        group.eval_many([(v, [more[k]]) for v, more in zip(views, steps, strict=True)])
        assert group.decodes == before + 1  # one llama_decode for the three sequences
    for v, ref, p, more in zip(views, refs, prompts, steps, strict=True):
        assert v.tokens == p + more
        assert maxdiff(v.logits(), ref) < TINY_BATCH_SHAPE_TOL


def test_a_views_logits_survive_other_sequences_decodes(tiny_engine):
    a, b = tiny_engine.sequences(2)
    ids = random_ids(5, 9, bos=True)
    a.eval(ids)
    row = a.logits().copy()
    assert np.shares_memory(a.logits(), a.group.row(len(ids) - 1))  # zero-copy: its last id's row
    b.eval(random_ids(6, 20, bos=True))
    b.eval(random_ids(7, 3))
    assert maxdiff(a.logits(), row) == 0.0  # kept (copied) before b's decode overwrote it


@pytest.mark.parametrize("unified_kv", [False, True], ids=["per-stream", "unified"])
def test_rollback_of_one_sequence_leaves_the_others(tiny_engine, unified_kv: bool):
    prompt, good, junk = random_ids(1, 25, bos=True), random_ids(2, 6), random_ids(3, 9)
    ref = single_logits(tiny_engine, prompt + good)
    a, b = tiny_engine.sequences(2, unified_kv=unified_kv)
    a.eval(prompt)
    b.eval(prompt)
    a.eval(junk)
    b.eval(good)
    b_row = b.logits().copy()
    a.rollback(len(prompt))
    assert a.tokens == prompt and b.tokens == prompt + good
    a.eval(good)
    assert maxdiff(a.logits(), ref) < TINY_BATCH_SHAPE_TOL
    assert maxdiff(a.logits(), b_row) == 0.0  # same tokens, same chunking: same numbers
    assert set_tokens(b, prompt + good) == 0
    a.rollback(0)
    assert a.tokens == [] and b.tokens == prompt + good
    with pytest.raises(RuntimeError, match="before an eval"):
        a.logits()


@pytest.mark.parametrize("unified_kv", [False, True], ids=["per-stream", "unified"])
def test_each_sequence_has_its_own_context_of_n_ctx(tiny_engine, unified_kv: bool):
    views = tiny_engine.sequences(2, unified_kv=unified_kv)
    views[0].eval(random_ids(1, tiny_engine.n_ctx, bos=False))  # fills its own cache
    views[1].eval(random_ids(2, 100, bos=True))  # the other still has all its room
    with pytest.raises(ContextOverflowError, match="do not fit the context"):
        views[0].eval([5])


def test_asking_for_more_kv_than_memory_is_a_usage_error(tiny_engine):
    with pytest.raises(UsageError, match="lower --batch or --n-ctx"):
        tiny_engine.sequences(10**7)
    assert tiny_engine.max_sequences() > 8


def test_sequences_are_reused_for_the_same_count_and_layout(tiny_engine):
    a = tiny_engine.sequences(4)
    assert tiny_engine.sequences(4)[0] is a[0]
    assert tiny_engine.sequences(2)[0] is not a[0]
    unified = tiny_engine.sequences(2, unified_kv=True)
    assert unified[0].group.unified_kv and unified[0] is not tiny_engine.sequences(2)[0]


def test_uneven_runs_of_scattered_sequences_match_either_layout(tiny_engine):
    """The guide's catch-ups: a few non-consecutive sequences with runs of different lengths in
    one eval_many (per-stream KV: several ubatches; unified: one) give the same logits."""
    prompts = [random_ids(20 + s, 6 + s, bos=True) for s in range(5)]
    runs = {1: random_ids(30, 4), 3: random_ids(31, 1), 4: random_ids(32, 7)}
    rows = {}
    for unified_kv in (False, True):
        views = tiny_engine.sequences(5, unified_kv=unified_kv)
        group = views[0].group
        group.eval_many(list(zip(views, prompts, strict=True)))
        before = group.decodes
        group.eval_many([(views[i], ids) for i, ids in runs.items()])
        assert group.decodes == before + 1  # 12 tokens: one llama_decode (n_batch 16)
        for i, ids in runs.items():
            assert views[i].tokens == prompts[i] + ids
            rows[unified_kv, i] = views[i].logits().copy()
    for i, ids in runs.items():
        ref = single_logits(tiny_engine, prompts[i] + ids)
        for unified_kv in (False, True):
            assert maxdiff(rows[unified_kv, i], ref) < TINY_BATCH_SHAPE_TOL



def test_pair_sequences_give_each_role_its_kv_layout(tiny_engine, monkeypatch):
    pair = ModelPair(base=tiny_engine)
    for override, unified in (("none", False), ("guide", False), ("base,guide", True)):
        monkeypatch.setenv("BLENDIN_KV_UNIFIED", override)
        assert pair_sequences(pair, 2)[0].base.group.unified_kv is unified
    monkeypatch.delenv("BLENDIN_KV_UNIFIED")
    assert not pair_sequences(pair, 2)[0].base.group.unified_kv  # the default: slower at long contexts

# --- the real default pair ------------------------------------------------------------------------
@pytest.mark.integration
def test_a_multi_sequence_context_decodes_batches_with_the_single_token_threads(tiny_gguf):
    """Without --threads, llama.cpp would decode one token each of B sequences (a batch) on every
    core; the views' context uses the single-token thread count for batches too."""
    import llama_cpp

    from blendin_local.engines.llama import LlamaEngine

    engine = LlamaEngine(tiny_gguf, n_ctx=256)  # threads left to llama-cpp-python's defaults
    try:
        group = engine.sequences(2)[0].group
        singles = llama_cpp.llama_n_threads(group.ctx)
        assert llama_cpp.llama_n_threads_batch(group.ctx) == singles
        assert singles == llama_cpp.llama_n_threads(engine._llm.ctx)
    finally:
        engine.close()


def test_gemma_views_in_one_batch_match_the_single_engine(real_pair):
    base = real_pair.base
    prompts = [b"The capital of France is", b"Photosynthesis is the process by which",
               b"Once upon a time", b"def fibonacci(n):"]
    ids = [base.tokenize(p, add_bos=base.add_bos) for p in prompts]
    refs = [single_logits(base, x) for x in ids]
    views = base.sequences(len(ids))
    views[0].group.eval_many(list(zip(views, ids, strict=True)))
    worst = max(maxdiff(v.logits(), r) for v, r in zip(views, refs, strict=True))
    print(f"\nGemma, 4 prompts in one batch vs alone: max |Δlogit| = {worst:.4f}")
    assert worst < GEMMA_BATCH_TOL, worst
    for v, r in zip(views, refs, strict=True):
        assert int(np.argmax(v.logits())) == int(np.argmax(r))
    alone = base.sequences(1)[0]
    alone.eval(ids[1])
    assert maxdiff(alone.logits(), refs[1]) == 0.0  # one sequence, same shapes: bit-identical


@pytest.mark.integration
@pytest.mark.parametrize("method", ["base", "blendin"])
def test_real_pair_batched_answers_differ_only_at_near_ties(real_pair, method: str) -> None:
    """Greedy answers at B = 8 vs one at a time: count those that differ, and check that each
    difference starts where the one-at-a-time run had a near tie (top-2 gap < NEAR_TIE) or, for
    blendin, a base top-1 probability near γ (the gate opens in one run only: |b - γ| < NEAR_GATE)."""
    questions = ["What is the capital of France?", "Name three primary colours.",
                 "How many legs does a spider have?", "What is 12 times 12?",
                 "Why is the sky blue?", "Who wrote Hamlet?", "What is water made of?",
                 "Give a synonym for happy."]
    convs = [Conversation.single(q) for q in questions]
    s = GenerationSettings(method=method, max_tokens=48, final_top=2)
    one = []
    for conv in convs:
        gen = generate(real_pair, conv, s)
        one.append(list(gen))
    many = generate_many(real_pair, convs, s, batch=8)
    assert many.batched
    got: list[list] = [[] for _ in convs]
    for i, step in many:
        got[i].append(step)
    differ = 0
    gaps = []
    for a, b in zip(one, got, strict=True):
        ta, tb = [x.token for x in a], [x.token for x in b]
        if ta == tb:
            continue
        differ += 1
        k = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
                 min(len(ta), len(tb)) - 1)
        top = a[k].top  # the final distribution the token was drawn from
        gap = top[0].prob - top[1].prob if len(top) > 1 else 1.0
        to_gate = abs(a[k].b - s.gamma) if method == "blendin" and a[k].b is not None else 1.0
        gaps.append(f"step {k}: gap {gap:.4f}, |b - gamma| {to_gate:.4f}")
        assert gap < NEAR_TIE or to_gate < NEAR_GATE, (
            f"answers part at step {k} with a top-2 gap of {gap:.3f}, b {to_gate:.3f} from gamma")
    print(f"\n{method}: {differ} of {len(convs)} greedy answers differ between B=1 and B=8 "
          f"({'; '.join(gaps) or 'none'})")
