"""Guide → base vocabulary projection (spec §4), built once per pair and cached on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import blend
from .engines.base import Engine

EXACT, APPROX, DROP, END = 0, 1, 2, 3
KIND_NAMES = {EXACT: "exact", APPROX: "approximate", DROP: "dropped", END: "end→EOS"}
_CACHE_VERSION = 2


@dataclass(frozen=True)
class Projection:
    """``target[g]`` is the base id for guide id ``g`` (``-1``: dropped); ``kind[g]`` says how."""

    target: NDArray[np.int64]
    kind: NDArray[np.uint8]
    n_base: int
    identity: bool = False
    # At the very start of the answer a plain-format base continues "Answer:" and expects a leading
    # space, while a chat guide starts its turn without one: there, guide "The" → base " The".
    lead_target: NDArray[np.int64] | None = None

    def at_answer_start(self) -> Projection:
        """The map for the answer's first token (space-led base twins where they exist)."""
        if self.lead_target is None:
            return self
        return Projection(self.lead_target, self.kind, self.n_base)

    @property
    def approx_mask(self) -> NDArray[np.bool_]:
        return self.kind == APPROX

    @cached_property
    def kept_ids(self) -> NDArray[np.int64]:
        """Guide ids with a base target (precomputed once: the per-step scatter uses them)."""
        return np.flatnonzero(self.target >= 0)

    @cached_property
    def kept_targets(self) -> NDArray[np.int64]:
        return self.target[self.kept_ids]

    def apply(self, p_guide: NDArray[np.floating]) -> tuple[NDArray[np.float32], float]:
        """``(q over the base vocabulary, dropped mass)`` for a guide distribution."""
        return blend.project(p_guide, self.kept_ids, self.kept_targets, self.n_base)

    def coverage(self) -> dict[str, float]:
        """Percent of the guide vocabulary per kind."""
        n = max(1, self.kind.size)
        return {name: 100.0 * float(np.sum(self.kind == k)) / n for k, name in KIND_NAMES.items()}

    def without_end(self) -> Projection:
        """The same map with end-of-turn tokens dropped (the guide cannot end the answer)."""
        end = self.kind == END
        kind = np.where(end, DROP, self.kind).astype(np.uint8)
        lead = None if self.lead_target is None else np.where(end, -1, self.lead_target)
        return Projection(np.where(end, -1, self.target), kind, self.n_base, lead_target=lead)


def vocab_hash(pieces: list[bytes], controls: frozenset[int]) -> str:
    """A stable hash of a vocabulary's pieces and control flags."""
    h = hashlib.sha256()
    for i, p in enumerate(pieces):
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
        h.update(b"\x01" if i in controls else b"\x00")
    return h.hexdigest()


def same_vocabulary(base: Engine, guide: Engine) -> bool:
    return base.n_vocab == guide.n_vocab and base.pieces() == guide.pieces()


def build_projection(base: Engine, guide: Engine) -> Projection:
    """Map each guide token to a base token by its bytes (spec §4).

    Exact piece match → that base id; else the first base token of the piece (approximate);
    guide end-of-generation → base EOS; other control tokens and empty pieces → dropped.
    """
    n_guide = guide.n_vocab
    base_pieces = base.pieces()
    base_controls = base.control_ids()
    by_piece: dict[bytes, int] = {}
    for i, p in enumerate(base_pieces):
        if p and i not in base_controls and p not in by_piece:
            by_piece[p] = i
    if same_vocabulary(base, guide):
        ids = np.arange(n_guide, dtype=np.int64)
        kind = np.full(n_guide, EXACT, dtype=np.uint8)
        eog = list(guide.eog_ids())
        kind[eog] = END
        lead = _lead_targets(ids, kind, guide.pieces(), by_piece)
        return Projection(ids, kind, base.n_vocab, identity=True, lead_target=lead)
    target = np.full(n_guide, -1, dtype=np.int64)
    kind = np.full(n_guide, DROP, dtype=np.uint8)
    guide_controls = guide.control_ids()
    guide_eog = guide.eog_ids()
    for g, piece in enumerate(guide.pieces()):
        if g in guide_eog:
            target[g], kind[g] = base.eos_id, END
        elif g in guide_controls or not piece:
            continue
        elif piece in by_piece:
            target[g], kind[g] = by_piece[piece], EXACT
        else:
            first = base.tokenize(piece, add_bos=False, special=False)[:1]
            if first:
                target[g], kind[g] = first[0], APPROX
    lead = _lead_targets(target, kind, guide.pieces(), by_piece)
    return Projection(target, kind, base.n_vocab, lead_target=lead)


def _lead_targets(
    target: NDArray[np.int64], kind: NDArray[np.uint8], pieces: list[bytes], by_piece: dict[bytes, int]
) -> NDArray[np.int64]:
    lead = target.copy()
    for g in np.flatnonzero((kind == EXACT) | (kind == APPROX)):
        piece = pieces[g]
        if not piece[:1].isspace():
            lead[g] = by_piece.get(b" " + piece, int(target[g]))
    return lead


def load_or_build(base: Engine, guide: Engine, cache_dir: Path) -> Projection:
    """The pair's projection from ``cache_dir`` (keyed by both vocab hashes), built on a miss."""
    key_b = vocab_hash(base.pieces(), base.control_ids())[:16]
    key_g = vocab_hash(guide.pieces(), guide.control_ids())[:16]
    path = cache_dir / f"projection-v{_CACHE_VERSION}-{key_b}-{key_g}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return Projection(
                    data["target"], data["kind"], int(data["n_base"]), bool(data["identity"]),
                    data["lead_target"],
                )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    proj = build_projection(base, guide)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, target=proj.target, kind=proj.kind, n_base=proj.n_base, identity=proj.identity,
             lead_target=proj.target if proj.lead_target is None else proj.lead_target)
    tmp.replace(path)
    return proj
