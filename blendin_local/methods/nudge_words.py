"""Nudging's word logic (spec §5), shared by the local loop (``nudging``) and the loop over a base
on a server (``remote_nudging``): split the guide's draft into words, let the base veto words, and
pick the accepted draft's tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ..engines.base import Requests
from ..generation.driver import Pick
from ..generation.steps import Provenance, Step

_WORD = re.compile(rb"\s*\S+")


def split_words(text: bytes) -> list[bytes]:
    """Space-separated words, each with its leading whitespace (trailing whitespace dropped)."""
    return _WORD.findall(text)


def base_starts_word(top_piece: bytes, word: bytes) -> bool:
    """Would the base's favourite token begin ``word`` itself?"""
    head = top_piece.strip()
    return bool(head) and word.strip().startswith(head)


def accept_words(words: list[bytes], base_top: Callable[[bytes], Requests[tuple[float, bytes]]],
                 gamma: float) -> Requests[list[bytes]]:
    """The draft's words the base lets through: the first always, each next one while the base,
    given the text so far (``base_top(accepted) -> (top-1 prob, top piece)``, a local base's
    evaluations as requests), is unsure and does not start that word itself."""
    accepted: list[bytes] = words[:1]
    for word in words[1:]:
        b, top_piece = yield from base_top(b"".join(accepted))
        if b >= gamma or base_starts_word(top_piece, word):
            break
        accepted.append(word)
    return accepted


def nudge_picks(draft: list[tuple[int, bytes]], accepted: list[bytes], index: int, b: float, *,
                t_base: float, t_guide: float) -> Iterator[Pick]:
    """The picks of one nudge: the draft's tokens covering the accepted words, the first marked as
    the intervention (shared by the local and the remote-base loops; the driver ends the answer
    inside the nudge at a stop string or the token limit)."""
    first = True
    for token, piece in _tokens_covering(draft, len(b"".join(accepted))):
        yield Pick(_guide_step(index, token, piece, b if first else None,
                               t_base if first else 0.0, t_guide if first else 0.0), piece=piece)
        first = False
        index += 1


def _guide_step(index: int, token: int, piece: bytes, b: float | None, t_base: float,
                t_guide: float) -> Callable[[str, float], Step]:
    def describe(text: str, _: float) -> Step:
        return Step(index=index, token=token, piece=piece, text=text, provenance=Provenance.GUIDE,
                    intervened=b is not None, b=b, t_base=t_base, t_guide=t_guide)

    return describe


def _tokens_covering(draft: list[tuple[int, bytes]], n_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The draft's tokens up to ``n_bytes`` of text, the last one cut at the word boundary."""
    used = 0
    for token, whole in draft:
        if used >= n_bytes:
            return
        piece = whole[: n_bytes - used]
        used += len(piece)
        yield token, piece
