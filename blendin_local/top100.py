"""``--support top100``: the paper-compatible blend over the two models' top-100 *strings* (spec §3).

Each model's top-100 tokens are decoded (UTF-8, errors ignored, as the reference's servers do); a
string seen twice keeps the probability of its later, lower-ranked token. Both models then read the
canonical tokenisation of their prefix + the text, re-tokenised incrementally.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from . import blend
from .settings import CAP_WARMUP
from .steps import Provenance, Step, StopReason

if TYPE_CHECKING:
    from .generate import Generation

TOP = 100


def string_distribution(p: np.ndarray, pieces: list[str], k: int = TOP) -> dict[str, float]:
    """The reference's ``{string: prob}`` of the top ``k`` tokens, later ranks overwriting."""
    out: dict[str, float] = {}
    for i in blend.top_k_ids(p, k):
        out[pieces[i]] = float(p[i])
    return out


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


def choose_string(gen: Generation, mixed: dict[str, float], b_top: str, index: int
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


def decoded_strings(pieces: list[bytes], controls: frozenset[int]) -> list[str]:
    """Token strings as the servers report them: control tokens are skipped (empty)."""
    return [
        "" if i in controls else p.decode("utf-8", errors="ignore") for i, p in enumerate(pieces)
    ]


def top100_steps(gen: Generation) -> Iterator[Step]:
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync, guide = gen.text_syncs()
    base_pieces = base.pieces()
    base_strings = decoded_strings(base_pieces, base.control_ids())
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
        gd, g = guide.strings(gen.output.y)
        t3 = time.perf_counter()
        bd = string_distribution(p_base, base_strings)
        mixed, alpha, b_top, _ = blend_string_distributions(bd, gd, b, g, s.alpha)
        piece, text, provenance = choose_string(gen, mixed, b_top, index)
        yield Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                   intervened=True, b=b, g=g, alpha=alpha,
                   p_base_token=None, t_base=t1 - t0, t_guide=t3 - t2,
                   t_blend=(t2 - t1) + (time.perf_counter() - t3))
