"""Decoding where a model is behind a server (spec §3, §5, §10): a remote base with a local or remote
guide (``base``, ``blendin``/``ensemble`` with ``--support top100``, ``nudging``), and a remote guide
alone (``guide``). A local base with a remote guide runs the local loops (``top100``, ``nudging``),
which read the guide through :mod:`guide_side`.

One base request per confident run of tokens instead of one per token: while the base is confident
its streamed chunk is accepted token by token; at the first position whose top-1 probability is below
γ the stream is closed and the guide is asked about that same position (the base's distribution there
is the one already streamed: no extra request); the next base request starts after the chosen text.

How many tokens each request asks for is :class:`ChunkSizer`'s one decision, from the server's costs
as measured (:mod:`remote_chunks`), and a server on this machine is left to finish the token it has
in flight before a local model runs (:class:`ServerClock`).

With ``RemoteModel.keep_open`` (the default) the stream is not closed at an unsure position: the
server, greedy, goes on decoding the base's own continuation while the guide and the blend decide,
and where the chosen token is the base's (same bytes) the run reads on from the same stream (no
request, no round trip, nothing decoded for nobody); only a changed token closes it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..engines.remote.engine import Position, RemoteModel
from ..generation.decoding import Decoding
from ..generation.driver import End, Event, Pick, Picks, drive
from ..generation.steps import Provenance, Step, StopReason
from ..pair import prompt_for
from .gate import gate_open
from .guide_side import GuideView, guide_view
from .remote_chunks import DRAIN, ChunkSizer, ServerClock, clock_for
from .strings import TOP, string_intervention, string_overlaps
from .top100 import sampled, string_pick


def _text(y: bytes) -> str:
    return y.decode("utf-8", errors="replace")


@dataclass
class Run:
    """One base request's stream of positions and the tokens it asked for."""

    positions: Generator[Position, None, None]
    asked: int
    sent: float = field(default_factory=time.perf_counter)
    timed: bool = True  # False: its first position was read before (a nudging check read on)
    drained: bool = False  # read to its end before (``finish`` is its finish_reason)
    finish: str | None = None
    kept_open: bool = False  # the rest of a stream left open at an unsure position


class BaseRuns:
    """Streams of a remote base's confident runs: each request starts after the answer so far."""

    def __init__(self, gen: Decoding, logprobs: int, *, guided: bool = True, keep_open: bool = False) -> None:
        """``guided``: the run stops at unsure positions (False: ``base``, which never does).
        ``keep_open``: the loop leaves the stream open at an unsure position, where the base allows
        it (``RemoteModel.keep_open``; :meth:`decided` closes it or reads on)."""
        base = gen.pair.base
        assert isinstance(base, RemoteModel)  # narrows the type: remote_steps run over a server
        self.gen: Decoding = gen
        self.base: RemoteModel = base
        self.logprobs: int = logprobs
        self.guided: bool = guided
        self.prompt: str = _text(prompt_for(base, gen.conv, role="base").text)
        self.sizer: ChunkSizer = ChunkSizer(base.chunk_tokens)
        self.clock: ServerClock = clock_for(base.clocks, base.routed)
        self.closed: bool = False  # the last stream was closed with tokens left to decode
        self.keep_open: bool = keep_open and guided and base.keep_open
        self.live: Generator[Position, None, None] | None = None  # the last stream sent
        self.unsure_at: float = 0.0  # when the last unsure position arrived

    def stream(self, extra: bytes, index: int, *, check: bool = False) -> Run:
        """A request for the base's positions after the answer so far + ``extra``, of the size the
        measured costs call for. ``check``: a nudging word check (its first position is what is
        asked; it is read on only where it refuses a word), sized by the costs alone: the request
        bound counts the base's runs, not the checks; most checks are closed after their first
        position, so they are sized as such (``ServerClock.costs``)."""
        cap = self.clock.cap(self.sizer.largest, guided=self.guided, waits=self.base.shares_cpu, check=check,
                             keeps_open=self.keep_open)
        left = self.gen.settings.max_tokens - index
        asked = max(1, min(cap, left)) if check else self.sizer.ask(index, left, cap)
        self.clock.checks += check
        self.base.traffic.largest_chunk = max(self.base.traffic.largest_chunk, asked)
        self.clock.since_gap += 1
        self.live = self.base.stream(self.prompt + _text(self.gen.output.y + extra), max_tokens=asked,
                                     logprobs=self.logprobs)
        return Run(self.live, asked)

    def close(self) -> None:
        """Close the last stream where it is still open (the answer ended with it kept open)."""
        if self.live is not None:
            self.live.close()

    def first(self, run: Run) -> Position | None:
        """``run``'s first position (None: the base ends here), its wait measured like any other."""
        position = next(run.positions, None)
        if position is not None:
            self._arrived(run, 0, run.sent)
        return position

    def closed_early(self, run: Run, got: int) -> None:
        """Close ``run`` after ``got`` positions: a server still decoding the rest delays the next
        request (measured apart, ``ServerClock.firsts_after_close``)."""
        run.positions.close()
        self.closed = got < run.asked

    def read(self, run: Run, index: int,
             is_unsure: Callable[[Position, int], bool]) -> Generator[Pick, None, RunEnd]:
        """Pick ``run``'s positions from step ``index`` on as the base's, up to the first one
        ``is_unsure``. With ``keep_open`` the stream's rest is left open there (``RunEnd.rest``,
        for :meth:`decided`); otherwise nothing more of that request is used as it stands: a server
        on this machine with at most ``DRAIN`` tokens left in the chunk is read to the chunk's end,
        else the stream is closed there (and where the driver ends the answer in the run)."""
        got = 0
        unsure: Position | None = None
        rest: Run | None = None
        t0 = arrived = time.perf_counter()
        positions = run.positions
        try:
            for position in positions:
                arrived = self._arrived(run, got, arrived)
                got += 1
                self.clock.positions += 1
                if is_unsure(position, index):
                    self.clock.unsure += 1
                    unsure, self.unsure_at = position, arrived
                    rest = self._rest(positions, run.asked - got)
                    self.closed = rest is None and got < run.asked
                    break
                yield base_pick(position, index, time.perf_counter() - t0)
                index += 1
                t0 = time.perf_counter()
        finally:
            if rest is None or not rest.kept_open:
                positions.close()
        if unsure is None and self._ended(run, got):  # the server ended the text
            return RunEnd(index, None, 0.0, over=True)
        if unsure is None:
            self.sizer.ran_out()
        elif rest is None:
            self._settle(arrived, run.asked - got)
        return RunEnd(index, unsure, time.perf_counter() - t0, over=False, rest=rest)

    def _ended(self, run: Run, got: int) -> bool:
        if run.drained:
            return run.finish == "stop"
        if run.kept_open:  # its positions before the unsure one were another read's
            return self.base.last_finish == "stop"
        return self.base.ended_early(got, run.asked)

    def decided(self, end: RunEnd, piece: bytes) -> Run | None:
        """The guide chose ``piece`` at ``end.unsure``: the run to read on from (the rest of the
        stream, where ``piece`` is the base's own token there), or None. A stream kept open whose
        token was changed is closed here."""
        rest = end.read_on(piece)
        self.sizer.intervened(read_on=rest is not None and rest.kept_open)
        self.base.traffic.base_token_kept += end.unsure is not None and piece == end.unsure.text.encode()
        left_open = end.rest if end.rest is not None and end.rest.kept_open else None
        if self.keep_open:  # timed beside a server decoding for the open stream, or an idle one
            self.clock.decided(time.perf_counter() - self.unsure_at, kept=rest is not None,
                               open_=left_open is not None)
        if left_open is not None:
            self.base.traffic.decided_open += 1
            self.base.traffic.kept_open += rest is not None
            if rest is None:
                left_open.positions.close()
                self.closed = True
        return rest

    def _rest(self, positions: Generator[Position, None, None], left: int) -> Run | None:
        """What is kept of a stream past its unsure position with ``left`` tokens asked after it:
        the open stream itself (``keep_open``), or its drained rest, or None (close it)."""
        if self.keep_open and left > 0:
            return Run(positions, left, timed=False, kept_open=True)
        return self._drain(positions, left)

    def _drain(self, positions: Iterator[Position], left: int) -> Run | None:
        """Where the server shares this machine and has at most ``DRAIN`` tokens left to decode
        for this chunk, read them: when the stream ends the server is idle (no guess), and if the
        guide keeps the base's token they are the base's next positions. None: close instead."""
        if not self.base.shares_cpu or not 0 < left <= DRAIN:
            return None
        t0 = time.perf_counter()
        rest = list(positions)
        self.base.traffic.settle_s += time.perf_counter() - t0  # already in traffic.seconds
        return Run(_replay(rest), len(rest), timed=False, drained=True, finish=self.base.last_finish)

    def _arrived(self, run: Run, got: int, last: float) -> float:
        now = time.perf_counter()
        if run.drained or run.kept_open or not (got >= 2 or run.timed):  # kept open: read ahead
            return now
        if got:
            self.clock.stepped(now - last)
        else:
            firsts = self.clock.firsts_after_close if self.closed else self.clock.firsts
            firsts.append(now - run.sent)
            self.closed = False
        return now

    def _settle(self, arrived: float, left_in_chunk: int) -> None:
        """A server sharing this machine's cores is left to finish the tokens it decodes for the
        stream just closed before the client's next model work: two thread pools on the same cores
        slowed the guide's step ~5× (spec §10). Counted as time waiting on the base."""
        if not self.base.shares_cpu:
            return
        wait = self.clock.settle_s(left_in_chunk) - (time.perf_counter() - arrived)
        if wait > 0:
            time.sleep(wait)
            self.base.traffic.seconds += wait
            self.base.traffic.settle_s += wait


@dataclass(frozen=True)
class RunEnd:
    """Where a confident run stopped: the next step's index, the base's unsure position there (None:
    the chunk was used up), the base's time for it, and whether the server ended the text."""

    index: int
    unsure: Position | None
    t_base: float
    over: bool
    rest: Run | None = None  # the chunk after ``unsure``, read to its end: the base's next positions
    #                          if the guide keeps the base's token there

    def read_on(self, piece: bytes) -> Run | None:
        """The rest of the chunk, to read on from, when the token chosen at ``unsure`` is the
        base's own."""
        if self.rest is None or self.unsure is None or piece != self.unsure.text.encode():
            return None
        return self.rest


def _replay(positions: list[Position]) -> Generator[Position, None, None]:
    yield from positions


def base_pick(position: Position, index: int, t_base: float) -> Pick:
    """A position the base is sure of, taken as it is."""
    piece = position.text.encode()

    def describe(text: str, _: float) -> Step:
        return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.BASE,
                    intervened=False, b=position.top1_prob,
                    p_base_token=float(np.exp(position.logprob)), t_base=t_base)

    return Pick(describe, piece=piece)


def remote_base_steps(gen: Decoding) -> Iterator[Event]:
    """``base``, and ``blendin``/``ensemble`` over top-100 strings, with the base on a server."""
    s = gen.settings
    guide = guide_view(gen) if s.method != "base" else None
    runs = BaseRuns(gen, TOP if guide is not None else 1, guided=guide is not None,
                    keep_open=True)
    interventions = 0

    def is_unsure(position: Position, index: int) -> bool:
        return guide is not None and gate_open(position.top1_prob, s.gamma, s.cap, interventions, index)

    pending: Run | None = None  # the rest of a chunk, read on where the guide kept the base's token

    def picks_at(index: int) -> Picks:
        nonlocal interventions, pending
        run, pending = pending or runs.stream(b"", index), None
        end = yield from runs.read(run, index, is_unsure)
        if end.over:
            yield End(StopReason.EOS)
            return
        if end.unsure is None:
            return
        assert guide is not None
        interventions += 1
        pick = _blend_pick(gen, end.unsure, guide, end.index, end.t_base)
        yield pick
        pending = runs.decided(end, pick.piece)

    try:
        yield from drive(gen, picks_at)
    finally:  # the answer ended (or was closed) with a stream kept open
        runs.close()


def _blend_pick(gen: Decoding, position: Position, guide: GuideView, index: int,
                t_base: float) -> Pick:
    t1 = time.perf_counter()
    gd, g = guide.strings(gen.output.y)
    t2 = time.perf_counter()
    bd = position.probs()
    b = max(bd.values())
    sb = string_intervention(bd, gd, b, g, gen.settings.alpha, sampled(gen))
    o10, o100 = string_overlaps(bd, gd)

    def describe(text: str, _: float) -> Step:
        return Step(index=index, token=-1, piece=sb.chosen.encode(), text=text,
                    provenance=sb.provenance, intervened=True, b=b, g=g, alpha=sb.alpha,
                    p_base_token=bd.get(sb.chosen), p_guide_token=gd.get(sb.chosen),
                    overlap10=o10, overlap100=o100, t_base=t_base, t_guide=t2 - t1,
                    t_blend=time.perf_counter() - t2)

    return string_pick(sb, describe)


def remote_guide_steps(gen: Decoding) -> Iterator[Event]:
    """The ``guide`` method with the guide on a server: its greedy text in chunks of
    ``--remote-chunk`` tokens, one request each, without logprobs (cheap on every server)."""
    guide = gen.pair.guide
    assert isinstance(guide, RemoteModel)  # narrows the type: the guide runs on a server here
    s = gen.settings
    prompt = _text(prompt_for(guide, gen.conv, role="guide").text)

    def picks_at(index: int) -> Picks:
        asked = min(guide.chunk_tokens, s.max_tokens - index)
        got, finish = 0, None
        t0 = time.perf_counter()
        with contextlib.closing(guide.text_stream(prompt + _text(gen.output.y), max_tokens=asked)) as chunks:
            for text, reason in chunks:
                finish = reason or finish
                if not text:
                    continue
                got += 1
                yield Pick(_guide_step(index, text.encode(), t0), piece=text.encode())
                index += 1
                t0 = time.perf_counter()
        if finish == "stop" or (finish is None and got < asked) or got == 0:
            yield End(StopReason.EOS)

    yield from drive(gen, picks_at)


def _guide_step(index: int, piece: bytes, t0: float) -> Callable[[str, float], Step]:
    def describe(text: str, _: float) -> Step:
        return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.GUIDE,
                    intervened=False, b=None, t_guide=time.perf_counter() - t0)

    return describe
