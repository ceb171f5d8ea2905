"""``--support top100``: the paper-compatible blend over the two models' top-100 *strings* (spec §3).

Each model's top-100 tokens are decoded (UTF-8, errors ignored, as the reference's servers do); a
string seen twice keeps the probability of its later, lower-ranked token. Both models then read the
canonical tokenisation of their prefix + the text, re-tokenised incrementally.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from .. import blend
from ..decoding import Decoding
from ..engines.base import decoded_strings
from ..settings import CAP_WARMUP
from ..steps import Provenance, Step, StopReason

TOP = 100


def string_distribution(p: np.ndarray, pieces: list[str], k: int = TOP) -> dict[str, float]:
    """The reference's ``{string: prob}`` of the top ``k`` tokens, later ranks overwriting."""
    out: dict[str, float] = {}
    for i in blend.top_k_ids(p, k):
        out[pieces[i]] = float(p[i])
    return out


def string_overlaps(base: dict[str, float], guide: dict[str, float]) -> tuple[float, float]:
    """overlap@10 and @100 of the two models' top-k *string* sets (what a server gives: an
    approximation of the token overlap of spec §7, two tokens with one string count once)."""

    def top(d: dict[str, float], k: int) -> set[str]:
        return set(sorted(d, key=d.__getitem__, reverse=True)[:k])

    return (len(top(base, 10) & top(guide, 10)) / 10.0,
            len(top(base, TOP) & top(guide, TOP)) / float(TOP))


def top_string(d: dict[str, float]) -> str:
    return max(d, key=d.__getitem__)


def blend_strings(base: dict[str, float], guide: dict[str, float], alpha: float) -> dict[str, float]:
    """``alpha·guide + (1-alpha)·base`` over the union of strings (missing = 0), renormalised."""
    keys = list(base) + [s for s in guide if s not in base]
    mixed = {s: alpha * guide.get(s, 0.0) + (1.0 - alpha) * base.get(s, 0.0) for s in keys}
    total = sum(mixed.values())
    return {s: v / total for s, v in mixed.items()} if total > 0 else mixed


def blend_string_distributions(
    bd: dict[str, float], gd: dict[str, float], b: float, g: float, alpha: float | None,
) -> tuple[dict[str, float], float, str, str]:
    """One intervention over ``{string: prob}`` distributions with top-1 probabilities ``b``, ``g``:
    (blended distribution, α used, base's top string, guide's top string)."""
    b_top, g_top = top_string(bd), top_string(gd)
    if alpha is None:
        alpha = blend.auto_alpha(b, g, bd.get(g_top, 0.0))
    return blend_strings(bd, gd, alpha), alpha, b_top, g_top


def top100_choice(
    p_base: np.ndarray, p_guide: np.ndarray, base_strings: list[str], guide_strings: list[str],
    alpha: float | None,
) -> tuple[dict[str, float], float, str, str]:
    """One intervention from two full distributions (see :func:`blend_string_distributions`)."""
    bd = string_distribution(p_base, base_strings)
    gd = string_distribution(p_guide, guide_strings)
    return blend_string_distributions(bd, gd, float(p_base.max()), float(p_guide.max()), alpha)


def choose_string(gen: Decoding, mixed: dict[str, float], b_top: str, index: int
                  ) -> tuple[bytes, str, Provenance]:
    """Sample a string of the blend and add it to the answer: (its bytes, the text to show now,
    provenance). An empty string (a control token or partial byte) ends the answer."""
    keys = list(mixed)
    choice = keys[gen.sample(np.fromiter(mixed.values(), dtype=np.float64), gen.rng)]
    piece = choice.encode()
    if not piece:
        gen.stop_reason = StopReason.EOS if b_top == "" else StopReason.GUIDE_EOS
        text = gen.output.finish()
    else:
        text = gen.push(piece, index)
    return piece, text, Provenance.BLEND_AGREE if choice == b_top else Provenance.BLEND_GUIDE


def top100_steps(gen: Decoding) -> Iterator[Step]:
    base, guide = gen.pair.base, gen.pair.guide
    assert base is not None and guide is not None
    s = gen.settings
    base_sync, guide_sync = gen.text_syncs()
    base_pieces = base.pieces()
    base_strings = decoded_strings(base_pieces, base.control_ids())
    guide_strings = decoded_strings(guide.pieces(), guide.control_ids())
    interventions = 0
    for index in range(s.max_tokens):
        if gen.halted(base):
            return
        t0 = time.perf_counter()
        base_sync.update(gen.output.y)
        t1 = time.perf_counter()
        p_base = blend.softmax(base.logits())
        b = float(p_base.max())
        capped = s.cap is not None and index >= CAP_WARMUP and interventions / index >= s.cap
        if b >= s.gamma or capped:
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=t1 - t0)
            continue
        interventions += 1
        t2 = time.perf_counter()
        guide_sync.update(gen.output.y)
        p_guide = blend.softmax(guide.logits())
        t3 = time.perf_counter()
        mixed, alpha, b_top, _ = top100_choice(p_base, p_guide, base_strings, guide_strings, s.alpha)
        piece, text, provenance = choose_string(gen, mixed, b_top, index)
        yield Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                   intervened=True, b=b, g=float(p_guide.max()), alpha=alpha,
                   p_base_token=None, t_base=t1 - t0, t_guide=t3 - t2,
                   t_blend=(t2 - t1) + (time.perf_counter() - t3))
