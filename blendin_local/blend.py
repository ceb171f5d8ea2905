"""The BlendIn core: pure NumPy functions over next-token distributions.

Every function takes ``(n_vocab,)`` float arrays, returns new arrays and never mutates its input.
No I/O, no globals, no Python loop over the vocabulary.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating]
IntArray = NDArray[np.integer]

# The auto-alpha bonus weight on the base's belief in the guide's favourite (reference code).
AUTO_ALPHA_BONUS = 0.1


def softmax(logits: FloatArray) -> NDArray[np.float32]:
    """Probabilities from logits, float32, numerically stable (temperature 1)."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.subtract(z, z.max(), dtype=np.float32)
    np.exp(e, out=e)
    e *= np.float32(1.0 / e.sum())
    return e


def should_intervene(p_base: FloatArray, gamma: float) -> bool:
    """The gate: the guide speaks only when the base's top-1 probability is below ``gamma``."""
    return float(p_base.max()) < gamma


def auto_alpha(b: float, g: float, p_base_at_guide_top: float) -> float:
    """Per-step blend weight from the two models' confidence.

    Args:
        b: top-1 probability of the base.
        g: top-1 probability of the guide.
        p_base_at_guide_top: the base's probability of the guide's (projected) favourite token.
    """
    if b + g <= 0.0:
        return 0.5
    return float(np.clip(g / (b + g) + AUTO_ALPHA_BONUS * p_base_at_guide_top, 0.0, 1.0))


def blend(p_base: FloatArray, q_guide: FloatArray, alpha: float) -> NDArray[np.float32]:
    """``alpha * q_guide + (1 - alpha) * p_base``, renormalised."""
    p = np.multiply(q_guide, np.float32(alpha), dtype=np.float32)
    p += np.float32(1.0 - alpha) * p_base
    total = float(p.sum())
    # A mix of two distributions already sums to 1; rescale only when the guide had no mass left.
    if total > 0 and abs(total - 1.0) > 1e-4:
        p *= np.float32(1.0 / total)
    return p


def project(
    p_guide: FloatArray, kept_ids: IntArray, kept_targets: IntArray, n_base: int
) -> tuple[NDArray[np.float32], float]:
    """Move a guide distribution onto the base vocabulary.

    Args:
        p_guide: ``(n_guide,)`` guide probabilities.
        kept_ids: guide ids that have a base target (the rest are dropped).
        kept_targets: the base id of each kept guide id (same length as ``kept_ids``).
        n_base: size of the base vocabulary.

    Returns:
        ``(q, dropped)``: ``(n_base,)`` float32 distribution renormalised over the kept mass, and the
        guide probability mass that had nowhere to go.
    """
    weights = p_guide[kept_ids]
    q = np.zeros(n_base, dtype=np.float32)
    np.add.at(q, kept_targets, weights)  # several guide ids may land on one base id
    kept_mass = float(weights.sum())
    dropped = max(0.0, float(p_guide.sum()) - kept_mass)
    if kept_mass > 0:
        q *= np.float32(1.0 / kept_mass)
    return q, dropped


def top_k_ids(p: FloatArray, k: int) -> NDArray[np.intp]:
    """Ids of the ``k`` largest entries of a distribution (``p >= 0``), sorted by decreasing
    probability, ties broken by lower id."""
    k = min(k, p.shape[0])
    ids = _candidates(p, k)  # ascending ids that hold the top k, every tie at the k-th value too
    vals = p[ids]
    kth = np.partition(vals, ids.size - k)[ids.size - k]
    above = ids[vals > kth]
    above = above[np.lexsort((above, -p[above]))]
    tied = ids[vals == kth][: k - above.size]  # the lowest ids among the ties
    return np.concatenate([above, tied])


_STRIDE = 64


def _candidates(p: FloatArray, k: int) -> NDArray[np.intp]:
    """A small superset of the top ``k``: the ids with ``p >= t`` for a threshold ``t`` read off a
    strided sample. A full ``argpartition`` over 262 144 entries costs milliseconds, this tens of
    microseconds. Peaked float32 distributions underflow to exact zeros, so the threshold is taken
    among positive entries, and with fewer than ``k`` of those the lowest-id zeros fill up."""
    n = p.shape[0]
    if n < 4096 or k * _STRIDE > n:
        return np.arange(n)
    sample = p[::_STRIDE]
    sample = sample[sample > 0]  # introselect also crawls over long runs of equal values
    rank = 2 * (k // _STRIDE) + 2
    if sample.size >= rank:
        t = np.partition(sample, sample.size - rank)[sample.size - rank]
        ids = np.flatnonzero(p >= t)
        if ids.size >= k:
            return ids
    positive = np.flatnonzero(p > 0)
    if positive.size >= k:
        return positive
    zeros = np.flatnonzero(p == 0)[: k - positive.size]
    return np.sort(np.concatenate([positive, zeros]))


def overlap_at_k(p_base: FloatArray, q_guide: FloatArray, k: int) -> float:
    """``|topk(p_base) ∩ topk(q_guide)| / k``: how much the two models agree on candidates."""
    a = top_k_ids(p_base, k)
    b = top_k_ids(q_guide, k)
    return float(np.intersect1d(a, b).size) / float(k)


def entropy(p: FloatArray) -> float:
    """Shannon entropy in nats."""
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def js_divergence(p: FloatArray, q: FloatArray) -> float:
    """Jensen–Shannon divergence in nats (0 = identical, ln 2 = disjoint)."""
    m = 0.5 * (np.asarray(p, dtype=np.float64) + q)
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def _kl(p: FloatArray, m: NDArray[np.float64]) -> float:
    mask = p > 0
    pm = np.asarray(p, dtype=np.float64)[mask]
    return float((pm * np.log(pm / m[mask])).sum())


def proxy_combine(
    p_base: FloatArray, q_expert: FloatArray, q_anti: FloatArray, floor: float = 1e-12
) -> NDArray[np.float32]:
    """Proxy-tuning: ``log p ∝ log p_base + (log q_expert - log q_anti)``.

    Base tokens that neither guide reaches (both zero) get no offset instead of ``nan``.
    """
    offset = np.log(np.maximum(q_expert, floor)) - np.log(np.maximum(q_anti, floor))
    unreached = (q_expert <= 0) & (q_anti <= 0)
    offset[unreached] = 0.0
    logp = np.log(np.maximum(p_base, floor)) + offset
    return softmax(logp)
