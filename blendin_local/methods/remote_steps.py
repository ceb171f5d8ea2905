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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np

from ..decoding import Decoding
from ..engines.remote import Position, RemoteModel
from ..pair import prompt_for
from ..settings import CAP_WARMUP
from ..steps import Provenance, Step, StopReason
from .guide_side import GuideView, guide_view
from .strings import TOP, blend_string_distributions, string_overlaps
from .top100 import choose_string


def _text(y: bytes) -> str:
    return y.decode("utf-8", errors="replace")


class BaseRuns:
    """Streams of a remote base's confident runs: each request starts after the answer so far."""

    def __init__(self, gen: Decoding, logprobs: int) -> None:
        base = gen.pair.base
        assert isinstance(base, RemoteModel)
        self.gen: Decoding = gen
        self.base: RemoteModel = base
        self.logprobs: int = logprobs
        self.prompt: str = _text(prompt_for(base, gen.conv, role="base").text)

    def asked(self, index: int) -> int:
        return min(self.base.chunk_tokens, self.gen.settings.max_tokens - index)

    def stream(self, extra: bytes, index: int) -> Generator[Position, None, None]:
        return self.base.stream(self.prompt + _text(self.gen.output.y + extra),
                                max_tokens=self.asked(index), logprobs=self.logprobs)

    def read(self, chunk: Generator[Position, None, None], index: int,
             is_unsure: Callable[[Position, int], bool]) -> Generator[Step, None, RunEnd]:
        """Accept ``chunk``'s positions from step ``index`` on as base steps, up to the first one
        ``is_unsure`` (the stream is closed there: nothing more is read from that request)."""
        gen = self.gen
        asked, got = self.asked(index), 0
        unsure: Position | None = None
        t0 = time.perf_counter()
        with contextlib.closing(chunk) as positions:
            for position in positions:
                got += 1
                if is_unsure(position, index):
                    unsure = position
                    break
                yield base_step(gen, position, index, time.perf_counter() - t0)
                index += 1
                if gen.stop_reason is not None or index >= gen.settings.max_tokens:
                    return RunEnd(index, None, 0.0, over=True)
                t0 = time.perf_counter()
        if unsure is None and self.base.ended_early(got, asked):  # the server ended the text
            base_ended(gen)
            return RunEnd(index, None, 0.0, over=True)
        return RunEnd(index, unsure, time.perf_counter() - t0, over=False)


@dataclass(frozen=True)
class RunEnd:
    """Where a confident run stopped: the next step's index, the base's unsure position there (None:
    the chunk was used up), the base's time for it, and whether the answer is over."""

    index: int
    unsure: Position | None
    t_base: float
    over: bool


def base_step(gen: Decoding, position: Position, index: int, t_base: float) -> Step:
    piece = position.text.encode()
    text = gen.push(piece, index)
    return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.BASE,
                intervened=False, b=position.top1_prob, p_base_token=float(np.exp(position.logprob)),
                t_base=t_base)


def base_ended(gen: Decoding) -> None:
    gen.stop_reason = StopReason.EOS
    gen.output.finish()


def remote_base_steps(gen: Decoding) -> Iterator[Step]:
    """``base``, and ``blendin``/``ensemble`` over top-100 strings, with the base on a server."""
    s = gen.settings
    guide = guide_view(gen) if s.method != "base" else None
    runs = BaseRuns(gen, TOP if guide is not None else 1)
    interventions = 0

    def is_unsure(position: Position, index: int) -> bool:
        capped = s.cap is not None and index >= CAP_WARMUP and interventions / index >= s.cap
        return guide is not None and position.top1_prob < s.gamma and not capped

    index = 0
    while index < s.max_tokens:
        end = yield from runs.read(runs.stream(b"", index), index, is_unsure)
        index = end.index
        if end.over:
            return
        if end.unsure is None:
            continue
        assert guide is not None
        interventions += 1
        yield _blend_step(gen, end.unsure, guide, index, end.t_base)
        index += 1
        if gen.stop_reason is not None:
            return


def _blend_step(gen: Decoding, position: Position, guide: GuideView, index: int,
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
    o10, o100 = string_overlaps(bd, gd)
    return Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                intervened=True, b=b, g=g, alpha=alpha, p_base_token=bd.get(choice),
                p_guide_token=gd.get(choice), overlap10=o10, overlap100=o100,
                t_base=t_base, t_guide=t2 - t1,
                t_blend=time.perf_counter() - t2)


def remote_guide_steps(gen: Decoding) -> Iterator[Step]:
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
            base_ended(gen)
            return
