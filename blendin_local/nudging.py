"""Nudging (Fei et al. 2024), the reference's non-blending path (spec §5).

When the base's top-1 < γ, the guide greedily writes up to 16 tokens; its words are accepted one by
one (the first always) until the base, given the text so far, either starts the next word itself
or is confident. Both models read the canonical tokenisation of their prefix + the text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import blend
from .settings import NUDGE_TOKENS
from .steps import Provenance, Step, StopReason

if TYPE_CHECKING:
    from .generate import Generation

_WORD = re.compile(rb"\s*\S+")


def split_words(text: bytes) -> list[bytes]:
    """Space-separated words, each with its leading whitespace (trailing whitespace dropped)."""
    return _WORD.findall(text)


def base_starts_word(top_piece: bytes, word: bytes) -> bool:
    """Would the base's favourite token begin ``word`` itself?"""
    head = top_piece.strip()
    return bool(head) and word.strip().startswith(head)


def accept_words(words: list[bytes], base_top: Callable[[bytes], tuple[float, bytes]], gamma: float
                 ) -> list[bytes]:
    """The draft's words the base lets through: the first always, each next one while the base,
    given the text so far (``base_top(accepted) -> (top-1 prob, top piece)``), is unsure and does
    not start that word itself."""
    accepted: list[bytes] = words[:1]
    for word in words[1:]:
        b, top_piece = base_top(b"".join(accepted))
        if b >= gamma or base_starts_word(top_piece, word):
            break
        accepted.append(word)
    return accepted


def nudging_steps(gen: Generation) -> Iterator[Step]:
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync, guide = gen.text_syncs()
    base_pieces = base.pieces()

    def base_top(accepted: bytes) -> tuple[float, bytes]:
        base_sync.update(gen.output.y + accepted)
        p_next = blend.softmax(base.logits())
        top = int(p_next.argmax())
        return float(p_next[top]), base_pieces[top]

    index = 0
    while index < s.max_tokens:
        if gen.halted(base):
            return
        t0 = time.perf_counter()
        base_sync.update(gen.output.y)
        t1 = time.perf_counter()
        b = float(blend.softmax(base.logits()).max())
        if b >= s.gamma:
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=t1 - t0)
            index += 1
            if gen.stop_reason is not None:
                return
            continue
        # The guide nudges: draft, then accept words while the base stays unsure of them.
        t2 = time.perf_counter()
        draft, guide_ended = guide.draft(gen.output.y, NUDGE_TOKENS)
        words = split_words(b"".join(piece for _, piece in draft))
        accepted = accept_words(words, base_top, s.gamma)
        nudge = NudgeSteps(gen, b, t_base=t1 - t0, t_guide=time.perf_counter() - t2)
        for step in nudge.steps(draft, accepted, index):
            yield step
            index += 1
        if nudge.finished(guide_ended and len(accepted) == len(words)):
            return
        if not accepted:  # the guide wrote nothing usable: let the base go on
            base_sync.update(gen.output.y)
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=0.0)
            index += 1


class NudgeSteps:
    """The steps of one nudge: the draft's tokens covering the accepted words, the first marked as
    the intervention (shared by the local and the remote-base loops)."""

    def __init__(self, gen: Generation, b: float, *, t_base: float, t_guide: float) -> None:
        self.gen, self.b, self.t_base, self.t_guide = gen, b, t_base, t_guide
        self.cut = False  # the answer ended (stop string, token limit) inside the nudge

    def steps(self, draft: list[tuple[int, bytes]], accepted: list[bytes], index: int) -> Iterator[Step]:
        gen = self.gen
        first = True
        for token, piece in _tokens_covering(draft, len(b"".join(accepted))):
            text = gen.push(piece, index)
            yield Step(index=index, token=token, piece=piece, text=text,
                       provenance=Provenance.GUIDE, intervened=first, b=self.b if first else None,
                       t_base=self.t_base if first else 0.0, t_guide=self.t_guide if first else 0.0)
            first = False
            index += 1
            if gen.stop_reason is not None or index >= gen.settings.max_tokens:
                self.cut = True
                return

    def finished(self, guide_ended: bool) -> bool:
        """Does the answer end with this nudge? The guide's own end of turn ends it when every
        word of its draft was accepted."""
        if self.cut:
            return True
        if guide_ended:
            self.gen.stop_reason = StopReason.GUIDE_EOS
            self.gen.output.finish()
            return True
        return False


def _tokens_covering(draft: list[tuple[int, bytes]], n_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The draft's tokens up to ``n_bytes`` of text, the last one cut at the word boundary."""
    used = 0
    for token, whole in draft:
        if used >= n_bytes:
            return
        piece = whole[: n_bytes - used]
        used += len(piece)
        yield token, piece
