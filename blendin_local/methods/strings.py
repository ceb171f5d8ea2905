"""The paper's top-100 *string* distributions and their blend, as pure functions (spec §3): each
model's top-100 tokens decoded as strings, a string seen twice keeping its later, lower-ranked
probability; the union blended with weight α, missing strings at 0."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import blend
from ..generation.steps import Provenance

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


@dataclass(frozen=True)
class StringBlend:
    """An intervention over top-k strings: the blend, the α used, each model's top string, and the
    string chosen from the blend."""

    mixed: dict[str, float]
    alpha: float
    base_top: str
    guide_top: str
    chosen: str

    @property
    def provenance(self) -> Provenance:
        return Provenance.BLEND_AGREE if self.chosen == self.base_top else Provenance.BLEND_GUIDE


def string_intervention(
    bd: dict[str, float], gd: dict[str, float], b: float, g: float, alpha: float | None,
    choose: Callable[[dict[str, float]], str] = top_string,
) -> StringBlend:
    """The one string intervention (top100, a remote base, replay, paper mode): blend the base's and
    the guide's ``{string: prob}`` (:func:`blend_string_distributions`) and ``choose`` a string of
    the blend (greedy by default: the first string with the largest probability)."""
    mixed, alpha, b_top, g_top = blend_string_distributions(bd, gd, b, g, alpha)
    return StringBlend(mixed, alpha, b_top, g_top, choose(mixed))


def top100_choice(
    p_base: np.ndarray, p_guide: np.ndarray, base_strings: list[str], guide_strings: list[str],
    alpha: float | None,
) -> tuple[dict[str, float], float, str, str]:
    """One intervention from two full distributions (see :func:`blend_string_distributions`)."""
    bd = string_distribution(p_base, base_strings)
    gd = string_distribution(p_guide, guide_strings)
    return blend_string_distributions(bd, gd, float(p_base.max()), float(p_guide.max()), alpha)
