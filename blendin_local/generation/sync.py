"""Keep a model's KV cache on the canonical tokenisation of ``prefix + y`` as ``y`` grows (spec §4).

Tokenising the prefix and ``y`` apart is wrong at the seam ("Answer: " then "2"), and re-tokenising
everything per step is wasteful. We re-tokenise only the tail from a safe token boundary (a token that
starts with whitespace or is a control token, a few tokens back), keep the longest common prefix of the
KV cache and evaluate the new suffix in one batch.
"""

from __future__ import annotations

import time

from ..engines.base import Engine, Requests, now, set_tokens_requests

_WHITESPACE = frozenset(b" \n\t\r")
_BACKOFF = 2  # never trust the last tokens: appended text can merge into them


def complete_utf8_prefix(data: bytes) -> bytes:
    """``data`` without a trailing, incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data  # ASCII: whatever precedes is complete or already invalid
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


class TextSync:
    """Holds ``engine`` on ``tokenize(prefix + y)`` with incremental tail re-tokenisation."""

    def __init__(
        self, engine: Engine, prefix: bytes, *, add_bos: bool, lstrip_answer: bool = False
    ) -> None:
        self.engine = engine
        self.prefix = prefix
        # A chat turn starts on a fresh line: the space a plain-format base puts after "Answer:"
        # would only push a guide off its usual first token (ours).
        self.lstrip_answer = lstrip_answer
        self.add_bos = add_bos
        self.ids: list[int] = []
        self._ends: list[int] = []  # byte offset in prefix+y where each token's text ends
        self._pieces = engine.pieces()
        self._controls = engine.control_ids()
        self.incremental = self._pieces_reproduce_text()
        self.evaluated = 0
        self.prefill_s = 0.0

    def _pieces_reproduce_text(self) -> bool:
        # Tokenizers that add a dummy space prefix (Llama-2 SentencePiece) cannot restart mid-text.
        probe = b"a b"
        return b"".join(self._pieces[i] for i in self.engine.tokenize(probe, add_bos=False)) == probe

    def canonical(self, y: bytes) -> list[int]:
        """The canonical ids of ``prefix + y`` (complete UTF-8 only), computed incrementally."""
        if self.lstrip_answer:
            y = y.lstrip(b" ")
        text = self.prefix + complete_utf8_prefix(y)
        start_tok, start_byte = self._restart_point(len(text))
        added_bos = self.add_bos and start_tok == 0
        tail = self.engine.tokenize(text[start_byte:], add_bos=added_bos)
        ids = self.ids[:start_tok] + tail
        ends = self._ends[:start_tok]
        pos = start_byte
        for i, t in enumerate(tail):
            if not (added_bos and i == 0):  # a BOS the tokenizer added spells no text
                pos += len(self._pieces[t])
            ends.append(pos)
        if pos != len(text):  # pieces do not spell the text: fall back to whole re-tokenisation
            self.incremental = False
            ids = self.engine.tokenize(text, add_bos=self.add_bos)
            ends = []
        self.ids, self._ends = ids, ends
        return ids

    def update(self, y: bytes) -> int:
        """Bring the engine up to ``prefix + y``; returns how many tokens were evaluated.

        The first call evaluates the prefix on its own first, timed as ``prefill_s`` (prompt
        processing, like the base's), then catches up with ``y``.
        """
        return now(self.requests(y))

    def requests(self, y: bytes) -> Requests[int]:
        """:meth:`update` as evaluation requests (a driver may batch them with other answers')."""
        n = 0
        if not self.ids:
            t0 = time.perf_counter()
            n = yield from set_tokens_requests(
                self.engine, self.engine.tokenize(self.prefix, add_bos=self.add_bos))
            self.prefill_s = time.perf_counter() - t0
        n += yield from set_tokens_requests(self.engine, self.canonical(y))
        self.evaluated += n
        return n

    def _restart_point(self, text_len: int) -> tuple[int, int]:
        """(token index, byte offset) to re-tokenise from."""
        if not self.incremental or not self._ends:
            return 0, 0
        j = len(self.ids) - _BACKOFF
        while j > 0:
            tid = self.ids[j]
            piece = self._pieces[tid]
            safe = tid in self._controls or (piece[:1] and piece[0] in _WHITESPACE)
            if safe and self._ends[j - 1] <= text_len:
                return j, self._ends[j - 1]
            j -= 1
        return 0, 0
