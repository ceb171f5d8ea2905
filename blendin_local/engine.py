"""The engine interface: what the decoding loop needs from a language model.

Exactly one module (``llama_engine``) implements it on llama.cpp; ``fake_engine`` implements it on
scripted in-memory logits for tests. Token text is always ``bytes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from .remote import RemoteModel


class Engine(Protocol):
    """A causal LM with an incremental KV cache holding ``tokens``."""

    name: str
    n_vocab: int
    n_ctx: int
    bos_id: int | None
    eos_id: int
    add_bos: bool
    chat_template: str | None

    @property
    def tokens(self) -> list[int]:
        """The token ids the KV cache currently holds."""
        ...

    def tokenize(self, text: bytes, *, add_bos: bool = False, special: bool = True) -> list[int]:
        """Canonical tokenisation of ``text``; ``special`` parses control-token text."""
        ...

    def pieces(self) -> list[bytes]:
        """Bytes of every token id (control tokens as their text), cached."""
        ...

    def control_ids(self) -> frozenset[int]:
        """Ids of control tokens (BOS, EOS, chat markers...): not ordinary text."""
        ...

    def eog_ids(self) -> frozenset[int]:
        """Ids that end a generation (EOS, end-of-turn)."""
        ...

    def eval(self, ids: Sequence[int]) -> None:
        """Append ``ids`` to the KV cache in one batch; afterwards ``logits()`` is the next-token row."""
        ...

    def rollback(self, n: int) -> None:
        """Keep only the first ``n`` cached tokens (``logits()`` is invalid until the next eval)."""
        ...

    def logits(self) -> NDArray[np.float32]:
        """``(n_vocab,)`` next-token logits after the last evaluated token.

        May be a view on the engine's buffer, overwritten by the next ``eval``: copy what you keep.
        """
        ...

    def eval_logits(self, ids: Sequence[int]) -> NDArray[np.float32]:
        """Append ``ids`` and return ``(len(ids), n_vocab)`` logits, row i predicting the id after
        ``ids[i]`` (one batched evaluation; used by replay)."""
        ...


def is_remote(engine: object) -> TypeGuard[RemoteModel]:
    """A model behind a server (``remote.RemoteModel``): stateless, top-k logprobs as strings, no
    vocabulary, template or KV cache to read."""
    return bool(getattr(engine, "stateless", False))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def set_tokens(engine: Engine, ids: Sequence[int]) -> int:
    """Make the KV cache hold exactly ``ids`` with fresh logits for the last one.

    Keeps the longest common prefix, rolls back the rest and evaluates the new suffix in one batch.
    Returns the number of tokens evaluated.
    """
    if not ids:
        raise ValueError("set_tokens needs at least one token")
    current = engine.tokens
    keep = common_prefix_len(current, ids)
    if keep == len(ids) == len(current):
        return 0
    # To re-read the distribution at the last position, that position must be evaluated again.
    keep = min(keep, len(ids) - 1)
    engine.rollback(keep)
    engine.eval(ids[keep:])
    return len(ids) - keep
