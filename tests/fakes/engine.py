"""An in-memory engine with scripted logits: drives the decoding loop in tests and demos.

Tokenisation is greedy longest-match over the pieces, which makes it canonical and deterministic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from blendin_local.engines.base import LOCAL, InProcess, Position, dense_top_logprobs
from blendin_local.errors import ContextOverflowError

LogitsFn = Callable[[tuple[int, ...]], NDArray[np.float32]]


class FakeEngine(InProcess):
    """Implements :class:`blendin_local.engines.base.Engine` on a piece list and a logits function.

    Args:
        pieces: bytes of each token id; control tokens are listed in ``controls``.
        logits_fn: maps the whole cached context (a tuple of ids) to ``(n_vocab,)`` logits.
        eos_id: end-of-sequence id; ``eog`` adds other end-of-generation ids.
    """

    capabilities = LOCAL

    def __init__(
        self,
        pieces: Sequence[bytes],
        logits_fn: LogitsFn,
        *,
        eos_id: int,
        bos_id: int | None = None,
        controls: Sequence[int] = (),
        eog: Sequence[int] = (),
        chat_template: str | None = None,
        n_ctx: int = 512,
        name: str = "fake",
    ) -> None:
        self.name = name
        self._pieces = list(pieces)
        self._logits_fn = logits_fn
        self.n_vocab = len(self._pieces)
        self.n_ctx = n_ctx
        self.eos_id = eos_id
        self.bos_id = bos_id
        self.add_bos = bos_id is not None
        self.chat_template = chat_template
        self._controls = frozenset(controls) | {eos_id} | ({bos_id} if bos_id is not None else set())
        self._eog = frozenset(eog) | {eos_id}
        self._tokens: list[int] = []
        self._last: NDArray[np.float32] | None = None
        self.eval_calls = 0
        self.evaluated_tokens = 0
        self.fail_at_call: int | None = None  # this eval call (1-based) raises, as llama_decode can
        # Longest-match table: only non-empty, non-control pieces take part in tokenisation,
        # plus control pieces when ``special`` is on.
        self._by_piece: dict[bytes, int] = {}
        for i, p in enumerate(self._pieces):
            if p and p not in self._by_piece:
                self._by_piece[p] = i
        self._max_len = max((len(p) for p in self._pieces), default=1)

    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    def tokenize(self, text: bytes, *, add_bos: bool = False, special: bool = True) -> list[int]:
        ids: list[int] = [self.bos_id] if add_bos and self.bos_id is not None else []
        i = 0
        while i < len(text):
            for n in range(min(self._max_len, len(text) - i), 0, -1):
                tid = self._by_piece.get(text[i : i + n])
                if tid is not None and (special or tid not in self._controls):
                    ids.append(tid)
                    i += n
                    break
            else:
                raise ValueError(f"fake tokenizer cannot encode byte {text[i:i + 1]!r}")
        return ids

    def pieces(self) -> list[bytes]:
        return list(self._pieces)

    def control_ids(self) -> frozenset[int]:
        return self._controls

    def eog_ids(self) -> frozenset[int]:
        return self._eog

    def eval(self, ids: Sequence[int]) -> None:
        if len(self._tokens) + len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"{self.name}: {len(self._tokens) + len(ids)} tokens exceed the context of {self.n_ctx}"
            )
        self._last = None  # like llama.cpp: a failed eval keeps the tokens and leaves no row
        self.eval_calls += 1
        if self.eval_calls == self.fail_at_call:
            raise RuntimeError("llama_decode returned -1")
        tokens = [*self._tokens, *(int(i) for i in ids)]
        self._last = np.asarray(self._logits_fn(tuple(tokens)), dtype=np.float32)
        self._tokens = tokens
        self.evaluated_tokens += len(ids)

    def rollback(self, n: int) -> None:
        if n < len(self._tokens):
            self._last = None
        del self._tokens[n:]

    @property
    def logits_ready(self) -> bool:
        return self._last is not None

    def logits(self) -> NDArray[np.float32]:
        if self._last is None:
            raise RuntimeError("logits read before any eval")
        return self._last

    def eval_logits(self, ids: Sequence[int]) -> NDArray[np.float32]:
        rows = []
        for i in ids:
            self.eval([i])
            rows.append(self.logits().copy())
        return np.stack(rows)

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        return dense_top_logprobs(self, prompt, k)

    def sequences(self, n: int, *, unified_kv: bool = False) -> list[FakeSequence]:
        """``n`` sequence views sharing one :class:`FakeGroup` (the multi-sequence interface of
        ``LlamaEngine.sequences``); kept for the next call with the same ``n``."""
        group = getattr(self, "_group", None)
        if group is None or len(group.views) != n:
            group = self._group = FakeGroup(self, n)
        return list(group.views)


class FakeGroup:
    """The fake's multi-sequence context: ``eval_many`` counts one decode per call and records
    how many sequences it held (the logits depend on each sequence's tokens only, as they should)."""

    def __init__(self, engine: FakeEngine, n: int) -> None:
        self.views = tuple(FakeSequence(engine, self, i) for i in range(n))
        self.decodes = 0
        self.batch_sizes: list[int] = []

    def eval_many(self, requests: Sequence[tuple[FakeEngine, Sequence[int]]]) -> None:
        for view, ids in requests:
            if not isinstance(view, FakeSequence) or view.group is not self:
                raise ValueError("eval_many takes views of this group only")
            if len(view._tokens) + len(ids) > view.n_ctx:
                raise ContextOverflowError(f"{view.name}: context of {view.n_ctx} exceeded")
        self.decodes += 1
        self.batch_sizes.append(len(requests))
        for view, ids in requests:
            FakeEngine.eval(view, ids)


class FakeSequence(FakeEngine):
    """One sequence of a :class:`FakeGroup`: the engine's vocabulary and logits, its own tokens."""

    def __init__(self, engine: FakeEngine, group: FakeGroup, seq: int) -> None:  # noqa: D107
        self.__dict__.update(copy.copy(engine.__dict__))
        self.__dict__.pop("_group", None)
        self.group = group
        self.seq = seq
        self._tokens = []
        self._last = None
        self.eval_calls = self.evaluated_tokens = 0

    def eval(self, ids: Sequence[int]) -> None:
        self.group.eval_many([(self, ids)])

    def sequences(self, n: int, *, unified_kv: bool = False) -> list[FakeSequence]:
        raise TypeError("a sequence view has no sequences of its own")


def peaked(n_vocab: int, favourites: dict[int, float], floor: float = 0.0) -> NDArray[np.float32]:
    """Logits whose softmax gives each id in ``favourites`` its probability; the rest share the
    remaining mass equally (``floor`` overrides that share when > 0)."""
    rest = 1.0 - sum(favourites.values())
    n_rest = n_vocab - len(favourites)
    share = floor if floor > 0 else (rest / n_rest if n_rest and rest > 0 else 1e-9)
    p = np.full(n_vocab, share, dtype=np.float64)
    for tid, prob in favourites.items():
        p[tid] = prob
    return np.log(p / p.sum()).astype(np.float32)
