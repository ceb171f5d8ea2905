"""The engine interfaces: what decoding needs from a language model, and what each engine can give.

Two kinds of engine form one family. A local llama.cpp engine (``engines/llama.py``) holds a KV cache
and gives dense full-vocabulary logits; a remote OpenAI-compatible server (``engines/remote/``) is
stateless and gives top-k logprobs per position (as strings), and can generate a chunk per request.
Each declares :class:`Capabilities`; methods state what they need and ``pair_check.check_pair``
compares the two once. Both give :meth:`Scorer.top_logprobs`. Token text is always ``bytes``.
Callers choose by capabilities (or ask the engine: ``where``, ``report``), never by class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from .. import blend


@dataclass(frozen=True)
class Capabilities:
    """What an engine can give (like simonw/llm's ``can_stream``): callers choose by these.

    Attributes:
        dense_logits: full-vocabulary logits at every position (and ids of a known vocabulary).
            Without them the step sources, guide view and replay over top-k strings run.
        kv_cache: keeps the evaluated tokens (``eval``/``rollback``): a step costs one token, and
            answers share batched decodes. Without one it is stateless: many answers keep
            requests in flight, each on its own handle.
        top_logprobs: the most top-k alternatives it reports per position; None: any k (computed
            from dense logits).
        vocabulary: its tokenizer, pieces, control ids and chat template can be read (else the
            server or an option renders the prompt).
    """

    dense_logits: bool
    kv_cache: bool
    top_logprobs: int | None
    vocabulary: bool

    def gives(self) -> str:
        """What it gives at a position, in words for error messages."""
        if self.dense_logits:
            return "full distributions"
        return f"top-{self.top_logprobs} logprobs" if self.top_logprobs else "no logprobs"

    def allows_top(self, k: int) -> bool:
        """Can it report ``k`` alternatives per position?"""
        return self.top_logprobs is None or self.top_logprobs >= k


T = TypeVar("T")

LOCAL = Capabilities(dense_logits=True, kv_cache=True, top_logprobs=None, vocabulary=True)


@dataclass(frozen=True)
class Position:
    """One position's distribution as top-k strings: the chosen (or most likely) token's string, its
    logprob, and the top-k alternatives (``{string: logprob}``; as parsed from JSON, a string listed
    twice keeps its later value)."""

    text: str
    logprob: float
    top: dict[str, float]

    @property
    def top1_prob(self) -> float:
        """Probability of the most likely token at this position (the gate's ``b``)."""
        return math.exp(max(self.top.values())) if self.top else math.exp(self.logprob)

    def probs(self) -> dict[str, float]:
        return {s: math.exp(lp) for s, lp in self.top.items()}


class Scorer(Protocol):
    """Anything that can score a text's next position: every engine."""

    name: str
    capabilities: Capabilities

    @property
    def where(self) -> str:
        """Where the model is, for messages: a server's URL, or a local model's name."""
        ...

    def report(self) -> dict[str, Any] | None:
        """What talking to the model cost so far (requests, bytes, seconds waiting), or None: a
        model in this process costs no traffic."""
        ...

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        """The ``k`` most likely next tokens after ``prompt`` as strings with their logprobs (None:
        the model ends the text there)."""
        ...


class InProcess:
    """The :class:`Scorer` members about servers, as a model in this process answers them."""

    name: str

    @property
    def where(self) -> str:
        return self.name

    def report(self) -> dict[str, Any] | None:
        return None


class Vocabulary(Protocol):
    """A tokenizer over a known vocabulary of ``n_vocab`` ids."""

    name: str
    n_vocab: int
    bos_id: int | None
    eos_id: int
    add_bos: bool
    chat_template: str | None

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


class Engine(Vocabulary, Scorer, Protocol):
    """A causal LM with dense logits and an incremental KV cache holding ``tokens``."""

    n_ctx: int

    @property
    def tokens(self) -> list[int]:
        """The token ids the KV cache currently holds."""
        ...

    def eval(self, ids: Sequence[int]) -> None:
        """Append ``ids`` to the KV cache in one batch; afterwards ``logits()`` is the next-token row."""
        ...

    def rollback(self, n: int) -> None:
        """Keep only the first ``n`` cached tokens (``logits()`` is invalid until the next eval)."""
        ...

    @property
    def logits_ready(self) -> bool:
        """Whether ``logits()`` is the row after the last of ``tokens``: False after a rollback that
        dropped tokens or an eval that failed, until the next eval succeeds."""
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


def decoded_strings(pieces: list[bytes], controls: frozenset[int]) -> list[str]:
    """Token strings as the servers report them: control tokens are skipped (empty)."""
    return [
        "" if i in controls else p.decode("utf-8", errors="ignore") for i, p in enumerate(pieces)
    ]


def top_position(logits: NDArray[np.float32], strings: list[str], k: int) -> Position:
    """A dense logits row as a server reports it: the top ``k`` strings with their logprobs (a string
    seen twice keeps its later, lower-ranked value, as when a server's JSON is parsed)."""
    x = logits.astype(np.float64)
    logp = x - x.max()
    logp -= np.log(np.exp(logp).sum())
    ids = blend.top_k_ids(np.exp(logp), k)  # ranked by probability (top_k_ids wants p >= 0)
    return Position(strings[int(ids[0])], float(logp[ids[0]]), {strings[i]: float(logp[i]) for i in ids})


def dense_top_logprobs(engine: Engine, prompt: str, k: int) -> Position:
    """:meth:`Scorer.top_logprobs` for a local engine: evaluate ``prompt`` (reusing what the KV
    cache holds) and read the top ``k`` of the dense logits row."""
    set_tokens(engine, engine.tokenize(prompt.encode(), add_bos=engine.add_bos))
    return top_position(engine.logits(), decoded_strings(engine.pieces(), engine.control_ids()), k)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


@dataclass(eq=False)
class Eval:
    """A request a step source yields instead of calling ``engine.eval(ids)`` itself: the driver
    runs it at once (one answer) or together with other answers' requests in one batched decode
    (:mod:`blendin_local.generation.driver`). When the source resumes, ``engine.logits()`` is the row after
    ``ids`` and ``seconds`` is how long it waited for it.

    ``beside``: work on the pair's other models that may run *during* this evaluation (the guide
    catching up with the text the evaluated token completed, so that its distribution is ready if
    the gate opens at the next step). A runner that overlaps models (:mod:`.overlap`) calls it once
    and runs the request generators it returns in another thread; any other runner never calls it,
    and the step source then evaluates those models itself where it needs them.
    """

    engine: Engine
    ids: Sequence[int]
    seconds: float = field(default=0.0)
    beside: Callable[[], list[Requests[Any]]] | None = None


Requests = Generator[Eval, None, T]  # yields evaluation requests, returns its result


def fits_context(request: Eval) -> bool:
    """Does ``request``'s engine have room for its ids after the tokens it holds?"""
    return len(request.engine.tokens) + len(request.ids) <= request.engine.n_ctx


class SequenceGroup(Protocol):
    """Several sequences of one model in one context (``Engine.sequences``): one ``eval_many``
    evaluates pending tokens of many of them in one decode."""

    def eval_many(self, requests: Sequence[tuple[Engine, Sequence[int]]]) -> None:
        """Append each request's ids to its sequence, all in one batch where they fit."""
        ...


def sequences_of(engine: Engine, n: int, *, unified_kv: bool = False) -> list[Engine] | None:
    """``n`` sequence views of ``engine`` sharing one multi-sequence context (each one an
    :class:`Engine`), or None where the engine has no such context (a server, an older fake).
    ``unified_kv``: one KV buffer for all sequences rather than one stream each (llama.cpp)."""
    make = getattr(engine, "sequences", None)
    return None if make is None else list(make(n, unified_kv=unified_kv))


def group_of(engine: Engine) -> SequenceGroup | None:
    """The multi-sequence context ``engine`` is a view of (None: a stand-alone engine)."""
    return getattr(engine, "group", None)


def run_eval(request: Eval) -> None:
    """Run one request now (the one-answer driver)."""
    t0 = time.perf_counter()
    if request.ids:
        request.engine.eval(request.ids)
    request.seconds = time.perf_counter() - t0


def run_evals(requests: Iterable[Eval]) -> None:
    """Run requests together: those on views of one multi-sequence context in one ``eval_many``,
    the others one by one. Each request's ``seconds`` is its group's time."""
    groups: dict[int, list[Eval]] = {}
    alone: list[Eval] = []
    owners: dict[int, SequenceGroup] = {}
    for r in requests:
        group = group_of(r.engine)
        if group is None or not r.ids:
            alone.append(r)
        else:
            groups.setdefault(id(group), []).append(r)
            owners[id(group)] = group
    for r in alone:
        run_eval(r)
    for key, rs in groups.items():
        t0 = time.perf_counter()
        owners[key].eval_many([(r.engine, r.ids) for r in rs])
        seconds = time.perf_counter() - t0
        for r in rs:
            r.seconds = seconds


def now(requests: Requests[T]) -> T:
    """Run a request generator to its end, each request at once; returns its result."""
    while True:
        try:
            request = next(requests)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        run_eval(request)


def answered(value: T) -> Requests[T]:
    """``value`` as a request generator that asks nothing (a server's answer, or a check made
    without a local model, where a caller expects requests)."""
    return value
    yield  # a generator: makes no request


def set_tokens_requests(engine: Engine, ids: Sequence[int]) -> Requests[int]:
    """:func:`set_tokens` as requests: rolls back now, yields the evaluation of the new suffix."""
    if not ids:
        raise ValueError("set_tokens needs at least one token")
    current = engine.tokens
    keep = common_prefix_len(current, ids)
    if keep == len(ids) == len(current) and engine.logits_ready:
        return 0
    # To re-read the distribution at the last position, that position must be evaluated again.
    keep = min(keep, len(ids) - 1)
    engine.rollback(keep)
    yield Eval(engine, list(ids[keep:]))
    return len(ids) - keep


def set_tokens(engine: Engine, ids: Sequence[int]) -> int:
    """Make the KV cache hold exactly ``ids`` with fresh logits for the last one.

    Keeps the longest common prefix, rolls back the rest and evaluates the new suffix in one batch;
    evaluates nothing only when the cache holds ``ids`` and its logits row is theirs (after a
    rollback to exactly ``ids``, the row is a later position's: the last one is evaluated again).
    Returns the number of tokens evaluated.
    """
    return now(set_tokens_requests(engine, ids))


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine, as the registry (``engines/__init__``) knows it.

    Attributes:
        name: ``local`` or ``remote`` (also the key of its options in ``models.load_engine``).
        spelling: how a model of this kind is named, for help and errors.
        claims: does a model name denote this kind? (The kind that claims nothing else is the
            fallback: ``fallback=True``.)
        open: builds the engine from the name (or, with ``reads_file``, the resolved file's path)
            and that kind's options.
        reads_file: the name is resolved to a local file first (catalog name, ``hf:`` ref, path).
    """

    name: str
    spelling: str
    claims: Callable[[str], bool]
    open: Callable[..., Scorer]
    reads_file: bool = False
    fallback: bool = False
