"""Nudging's word logic (spec §5), shared by the local loop (``nudging``) and the loop over a base
on a server (``remote_nudging``): split the guide's draft into words, let the base veto words, and
emit the accepted draft's tokens as steps."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ..generation.decoding import Decoding
from ..generation.steps import Provenance, Step, StopReason

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


class NudgeSteps:
    """The steps of one nudge: the draft's tokens covering the accepted words, the first marked as
    the intervention (shared by the local and the remote-base loops)."""

    def __init__(self, gen: Decoding, b: float, *, t_base: float, t_guide: float) -> None:
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
