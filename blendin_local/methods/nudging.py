"""Nudging (Fei et al. 2024), the reference's non-blending path (spec §5).

When the base's top-1 < γ, the guide greedily writes up to 16 tokens; its words are accepted one by
one (the first always) until the base, given the text so far, either starts the next word itself
or is confident. Both models read the canonical tokenisation of their prefix + the text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from .. import blend
from ..decoding import Decoding
from ..engines.base import Engine
from ..settings import NUDGE_TOKENS
from ..steps import Provenance, Step, StopReason
from .spec import MethodSpec, ignoring_spec

_WORD = re.compile(rb"\s*\S+")


def split_words(text: bytes) -> list[bytes]:
    """Space-separated words, each with its leading whitespace (trailing whitespace dropped)."""
    return _WORD.findall(text)


def base_starts_word(top_piece: bytes, word: bytes) -> bool:
    """Would the base's favourite token begin ``word`` itself?"""
    head = top_piece.strip()
    return bool(head) and word.strip().startswith(head)


def guide_draft(guide: Engine, limit: int) -> tuple[list[int], bool]:
    """Greedy guide tokens from its current position: (ids, whether it ended its turn)."""
    ids: list[int] = []
    eog = guide.eog_ids()
    for _ in range(limit):
        token = int(guide.logits().argmax())
        if token in eog:
            return ids, True
        ids.append(token)
        if len(guide.tokens) >= guide.n_ctx:
            break
        guide.eval([token])
    return ids, False


def nudging_steps(gen: Decoding) -> Iterator[Step]:
    base, guide = gen.pair.base, gen.pair.guide
    assert base is not None and guide is not None
    s = gen.settings
    base_sync, guide_sync = gen.text_syncs()
    base_pieces, guide_pieces = base.pieces(), guide.pieces()
    index = 0
    while index < s.max_tokens:
        if gen.halted(base):
            return
        t0 = time.perf_counter()
        base_sync.update(gen.output.y)
        t1 = time.perf_counter()
        p_base = blend.softmax(base.logits())
        b = float(p_base.max())
        if b >= s.gamma:
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=t1 - t0)
            index += 1
            if gen.stop_reason is not None:
                return
            continue
        # The guide nudges: draft, then accept words while the base stays unsure of them.
        t2 = time.perf_counter()
        guide_sync.update(gen.output.y)
        draft, guide_ended = guide_draft(guide, NUDGE_TOKENS)
        words = split_words(b"".join(guide_pieces[t] for t in draft))
        accepted: list[bytes] = words[:1]
        for word in words[1:]:
            base_sync.update(gen.output.y + b"".join(accepted))
            p_next = blend.softmax(base.logits())
            top = int(p_next.argmax())
            if float(p_next[top]) >= s.gamma or base_starts_word(base_pieces[top], word):
                break
            accepted.append(word)
        t_guide = time.perf_counter() - t2
        accepted_text = b"".join(accepted)
        everything = len(accepted) == len(words)
        first = True
        for token, piece in _tokens_covering(draft, guide_pieces, len(accepted_text)):
            text = gen.push(piece, index)
            yield Step(index=index, token=token, piece=piece, text=text,
                       provenance=Provenance.GUIDE, intervened=first, b=b if first else None,
                       t_base=(t1 - t0) if first else 0.0, t_guide=t_guide if first else 0.0)
            first = False
            index += 1
            if gen.stop_reason is not None or index >= s.max_tokens:
                return
        if guide_ended and everything:
            gen.stop_reason = StopReason.GUIDE_EOS
            gen.output.finish()
            return
        if not accepted_text:  # the guide wrote nothing usable: let the base go on
            base_sync.update(gen.output.y)
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=0.0)
            index += 1


def _tokens_covering(
    ids: list[int], pieces: list[bytes], n_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """The draft's tokens up to ``n_bytes`` of text, the last one cut at the word boundary."""
    used = 0
    for token in ids:
        if used >= n_bytes:
            return
        piece = pieces[token][: n_bytes - used]
        used += len(piece)
        yield token, piece


SPEC = MethodSpec(
    name="nudging",
    help="Nudging: where the base is unsure, the guide writes words until the base takes over.",
    roles=frozenset({"base", "guide"}),
    drives="base",
    colour="#2ca02c",
    knobs=frozenset({"gamma"}),
    gate="gamma",
    events=True,
    rate_note="the intervention rate counts guide calls per token.",
    steps={"full": ignoring_spec(nudging_steps)},
    rank=3,
)
