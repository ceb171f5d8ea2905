"""Samplers over a final next-token distribution, built by small factories (mlx-lm style).

A sampler is a plain function ``(probs, rng) -> token id``. Inert defaults switch a filter off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .. import limits
from ..blend import top_k_ids

Sampler = Callable[[NDArray[np.floating], np.random.Generator], int]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling applied to each step's final distribution. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("temperature", "top_k", "top_p", "min_p"):
            limits.check(name, getattr(self, name))
        if self.seed is not None:
            limits.check("seed", self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def make_sampler(settings: SamplingSettings) -> Sampler:
    """Return ``(probs, rng) -> id`` for these settings."""
    if settings.greedy:
        return lambda probs, rng: int(np.argmax(probs))

    def sample(probs: NDArray[np.floating], rng: np.random.Generator) -> int:
        ids, weights = candidates(probs, settings)
        return int(ids[rng.choice(ids.size, p=weights)])

    return sample


def candidates(
    probs: NDArray[np.floating], settings: SamplingSettings
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The ids left after top-k / top-p / min-p, with their tempered, renormalised weights."""
    p = np.asarray(probs, dtype=np.float64)
    if settings.top_k > 0:
        ids = top_k_ids(p, settings.top_k)
    else:
        ids = np.flatnonzero(p > 0)
    if settings.min_p > 0.0:
        ids = ids[p[ids] >= settings.min_p * p.max()]
    if settings.top_p < 1.0:
        ids = _nucleus(p, ids, settings.top_p)
    w = p[ids] ** (1.0 / settings.temperature)
    total = w.sum()
    if not np.isfinite(total) or total <= 0:
        # Extreme temperatures underflow: fall back to the most likely candidate.
        w = np.zeros_like(w)
        w[np.argmax(p[ids])] = 1.0
        return ids, w
    return ids, w / total


def _nucleus(p: NDArray[np.float64], ids: NDArray[np.intp], top_p: float) -> NDArray[np.intp]:
    """Smallest prefix (by decreasing probability) of ``ids`` whose mass reaches ``top_p``.

    Sorts a growing top slice instead of the whole vocabulary: usually 64 ids suffice.
    """
    sub = p[ids]
    mass = sub.sum() * top_p
    k = 64
    while True:
        k = min(k, ids.size)
        order = top_k_ids(sub, k)
        cum = np.cumsum(sub[order])
        hit = np.searchsorted(cum, mass)
        if hit < k or k == ids.size:
            return ids[order[: min(hit + 1, k)]]
        k *= 4
