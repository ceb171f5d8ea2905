"""Decoding where a model is behind a server (spec §3, §5, §10): a remote base with a local or remote
guide (``base``, ``blendin``/``ensemble`` with ``--support top100``, ``nudging``), and a remote guide
alone (``guide``). A local base with a remote guide runs the local loops (``top100``, ``nudging``),
which read the guide through :mod:`guide_side`.

One base request per confident run of tokens instead of one per token: while the base is confident
its streamed chunk is accepted token by token; at the first position whose top-1 probability is below
γ the stream is closed and the guide is asked about that same position (the base's distribution there
is the one already streamed: no extra request); the next base request starts after the chosen text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .engine import is_remote
from .errors import UsageError
from .guide_side import GuideView, guide_view
from .nudging import NudgeSteps, accept_words, split_words
from .pair import ModelPair, prompt_for
from .remote import Position, RemoteModel
from .settings import CAP_WARMUP, NEEDS_BASE, NEEDS_GUIDE, NUDGE_TOKENS, GenerationSettings
from .steps import Provenance, Step, StopReason
from .top100 import TOP, blend_string_distributions, choose_string

if TYPE_CHECKING:
    from .generate import Generation

TEXT_METHODS = ("blendin", "ensemble")  # blend top-k strings: need --support top100


def check_remote_pair(pair: ModelPair, settings: GenerationSettings) -> None:
    """One clear error when the method cannot run on these engines (called when any is remote)."""
    m = settings.method
    used = [(role, model) for role, model, needs in (("base", pair.base, NEEDS_BASE),
                                                       ("guide", pair.guide, NEEDS_GUIDE))
            if m in needs and is_remote(model)]
    if not used:
        return
    role, model = used[0]
    where = model.spec.url if isinstance(model, RemoteModel) else "a remote server"
    if m == "proxy" or (m in TEXT_METHODS and settings.support != "top100"):
        fix = "use --support top100" if m in TEXT_METHODS else "run both models locally"
        raise UsageError(f"method {m} --support {settings.support} needs full distributions; the "
                         f"{role} at {where} gives top-{TOP} logprobs: {fix}")
    if settings.sampling.temperature != 0:
        raise UsageError(f"a {role} on a server decodes greedily (the paper's setting): use "
                         "--temperature 0")


def runs_remote_loop(gen: Generation) -> bool:
    """Does this generation need one of this module's loops (rather than a local one)?"""
    method, pair = gen.settings.method, gen.pair
    return is_remote(pair.guide) if method == "guide" else is_remote(pair.base)


def remote_steps(gen: Generation) -> Iterator[Step]:
    if gen.settings.method == "guide":
        return remote_guide_steps(gen)
    if gen.settings.method == "nudging":
        return remote_nudging_steps(gen)
    return remote_base_steps(gen)


def _text(y: bytes) -> str:
    return y.decode("utf-8", errors="replace")


class BaseRuns:
    """Streams of a remote base's confident runs: each request starts after the answer so far."""

    def __init__(self, gen: Generation, logprobs: int) -> None:
        base = gen.pair.base
        assert isinstance(base, RemoteModel)
        self.gen: Generation = gen
        self.base: RemoteModel = base
        self.logprobs: int = logprobs
        self.prompt: str = _text(prompt_for(base, gen.conv, role="base").text)

    def asked(self, index: int) -> int:
        return min(self.base.chunk_tokens, self.gen.settings.max_tokens - index)

    def stream(self, extra: bytes, index: int) -> Generator[Position, None, None]:
        return self.base.stream(self.prompt + _text(self.gen.output.y + extra),
                                max_tokens=self.asked(index), logprobs=self.logprobs)


def base_step(gen: Generation, position: Position, index: int, t_base: float) -> Step:
    piece = position.text.encode()
    text = gen.push(piece, index)
    return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.BASE,
                intervened=False, b=position.top1_prob, p_base_token=float(np.exp(position.logprob)),
                t_base=t_base)


def _base_ended(gen: Generation) -> None:
    gen.stop_reason = StopReason.EOS
    gen.output.finish()


def remote_base_steps(gen: Generation) -> Iterator[Step]:
    """``base``, and ``blendin``/``ensemble`` over top-100 strings, with the base on a server."""
    s = gen.settings
    guide = guide_view(gen) if s.method != "base" else None
    runs = BaseRuns(gen, TOP if guide is not None else 1)
    interventions = 0
    index = 0
    while index < s.max_tokens:
        asked, got = runs.asked(index), 0
        unsure: Position | None = None
        t0 = time.perf_counter()
        with contextlib.closing(runs.stream(b"", index)) as chunk:
            for position in chunk:
                got += 1
                t_base = time.perf_counter() - t0
                capped = s.cap is not None and index >= CAP_WARMUP and interventions / index >= s.cap
                if guide is not None and position.top1_prob < s.gamma and not capped:
                    unsure = position
                    break  # closes the stream: nothing more is read from this request
                yield base_step(gen, position, index, t_base)
                index += 1
                if gen.stop_reason is not None or index >= s.max_tokens:
                    return
                t0 = time.perf_counter()
        if unsure is None:
            if got < asked:  # the server ended the text (its EOS) before the chunk was full
                _base_ended(gen)
                return
            continue
        assert guide is not None
        interventions += 1
        yield _blend_step(gen, unsure, guide, index, time.perf_counter() - t0)
        index += 1
        if gen.stop_reason is not None:
            return


def _blend_step(gen: Generation, position: Position, guide: GuideView, index: int,
                t_base: float) -> Step:
    s = gen.settings
    t1 = time.perf_counter()
    gd, g = guide.strings(gen.output.y)
    t2 = time.perf_counter()
    bd = position.probs()
    b = max(bd.values())
    mixed, alpha, b_top, _ = blend_string_distributions(bd, gd, b, g, s.alpha)
    piece, text, provenance = choose_string(gen, mixed, b_top, index)
    choice = piece.decode()
    return Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                intervened=True, b=b, g=g, alpha=alpha, p_base_token=bd.get(choice),
                p_guide_token=gd.get(choice), t_base=t_base, t_guide=t2 - t1,
                t_blend=time.perf_counter() - t2)


def remote_nudging_steps(gen: Generation) -> Iterator[Step]:
    """Nudging (spec §5) with the base on a server and the guide local or remote.

    The base's confident runs arrive in chunks; at its first unsure position the guide drafts up to
    16 tokens in one go and its words are checked against the base. Each check is the first position
    of a chunk request for the base after the words accepted so far; the check that rejects a word
    is, unchanged, the start of the base's next run, so that request is kept and read on.
    """
    s = gen.settings
    guide = guide_view(gen)
    runs = BaseRuns(gen, 1)
    index = 0
    pending: Generator[Position, None, None] | None = None  # a check's stream, read on
    while index < s.max_tokens:
        asked, got = runs.asked(index), 0
        unsure: Position | None = None
        t0 = time.perf_counter()
        with contextlib.closing(pending or runs.stream(b"", index)) as chunk:
            pending = None
            for position in chunk:
                got += 1
                t_base = time.perf_counter() - t0
                if position.top1_prob < s.gamma:
                    unsure = position
                    break
                yield base_step(gen, position, index, t_base)
                index += 1
                if gen.stop_reason is not None or index >= s.max_tokens:
                    return
                t0 = time.perf_counter()
        if unsure is None:
            if got < asked:
                _base_ended(gen)
                return
            continue
        t_base = time.perf_counter() - t0
        t2 = time.perf_counter()
        draft, guide_ended = guide.draft(gen.output.y, NUDGE_TOKENS)
        words = split_words(b"".join(piece for _, piece in draft))
        checks = _Checks(runs, index)
        accepted = accept_words(words, checks.base_top, s.gamma)
        if len(accepted) < len(words):  # a word was refused: the base goes on from that check
            pending = checks.keep_last()
        checks.close()
        nudge = NudgeSteps(gen, unsure.top1_prob, t_base=t_base, t_guide=time.perf_counter() - t2)
        for step in nudge.steps(draft, accepted, index):
            yield step
            index += 1
        if nudge.finished(guide_ended and len(accepted) == len(words)):
            if pending is not None:
                pending.close()
            return
        if not accepted:  # the guide wrote nothing usable: the base takes its own token here
            yield base_step(gen, unsure, index, t_base)
            index += 1
            if gen.stop_reason is not None:
                return


class _Checks:
    """The base's first position after each candidate text, each from a chunk request whose stream
    stays open until the next check (or :meth:`keep_last`)."""

    def __init__(self, runs: BaseRuns, index: int) -> None:
        self.runs, self.index = runs, index
        self.last: tuple[Generator[Position, None, None], Position | None] | None = None

    def base_top(self, accepted: bytes) -> tuple[float, bytes]:
        self.close()
        stream = self.runs.stream(accepted, self.index)
        first = next(stream, None)
        self.last = (stream, first)
        if first is None:  # the base ends here: no word goes past its end
            return 1.0, b""
        top = max(first.top, key=first.top.__getitem__) if first.top else first.text
        return first.top1_prob, top.encode()

    def keep_last(self) -> Generator[Position, None, None] | None:
        """The last check's stream with its first position put back, for the base to read on."""
        if self.last is None:
            return None
        stream, first = self.last
        self.last = None
        return _put_back(first, stream)

    def close(self) -> None:
        if self.last is not None:
            self.last[0].close()
            self.last = None


def _put_back(first: Position | None, stream: Generator[Position, None, None]
              ) -> Generator[Position, None, None]:
    try:
        if first is not None:
            yield first
        yield from stream
    finally:
        stream.close()


def remote_guide_steps(gen: Generation) -> Iterator[Step]:
    """The ``guide`` method with the guide on a server: its greedy text in chunks of
    ``--remote-chunk`` tokens, one request each, without logprobs (cheap on every server)."""
    guide = gen.pair.guide
    assert isinstance(guide, RemoteModel)
    s = gen.settings
    prompt = _text(prompt_for(guide, gen.conv, role="guide").text)
    index = 0
    while index < s.max_tokens:
        asked = min(guide.chunk_tokens, s.max_tokens - index)
        got, finish = 0, None
        t0 = time.perf_counter()
        with contextlib.closing(guide.text_stream(prompt + _text(gen.output.y), max_tokens=asked)) as chunks:
            for text, reason in chunks:
                finish = reason or finish
                if not text:
                    continue
                got += 1
                piece = text.encode()
                yield Step(index=index, token=-1, piece=piece, text=gen.push(piece, index),
                           provenance=Provenance.GUIDE, intervened=False, b=None,
                           t_guide=time.perf_counter() - t0)
                index += 1
                if gen.stop_reason is not None or index >= s.max_tokens:
                    return
                t0 = time.perf_counter()
        if finish == "stop" or (finish is None and got < asked) or got == 0:
            _base_ended(gen)
            return
