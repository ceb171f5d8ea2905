"""Nudging (spec §5) with the base on a server and the guide local or remote: the base's confident
runs arrive in chunks, and each word check is the first position of a chunk request that is read on
when it becomes the base's next run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator

from ..engines.base import answered, now
from ..engines.remote.engine import Position
from ..generation.decoding import Decoding
from ..generation.driver import End, Event, Picks, drive
from ..generation.steps import StopReason
from ..settings import NUDGE_TOKENS
from .gate import gate_open
from .guide_side import guide_view
from .nudge_words import accept_words, nudge_picks, split_words
from .remote_steps import BaseRuns, Run, base_pick


def remote_nudging_steps(gen: Decoding) -> Iterator[Event]:
    """Nudging (spec §5) with the base on a server and the guide local or remote.

    The base's confident runs arrive in chunks; at its first unsure position the guide drafts up to
    16 tokens in one go and its words are checked against the base. Each check is the first position
    of a chunk request for the base after the words accepted so far; the check that rejects a word
    is, unchanged, the start of the base's next run, so that request is kept and read on.
    """
    s = gen.settings
    guide = guide_view(gen)
    runs = BaseRuns(gen, 1)
    pending: Run | None = None  # a check's stream, read on

    def is_unsure(position: Position, index: int) -> bool:
        return gate_open(position.top1_prob, s.gamma, None, 0, index)

    def picks_at(index: int) -> Picks:
        nonlocal pending
        chunk, pending = pending or runs.stream(b"", index), None
        end = yield from runs.read(chunk, index, is_unsure)
        if end.over:
            yield End(StopReason.EOS)
            return
        index, unsure, t_base = end.index, end.unsure, end.t_base
        if unsure is None:
            return
        runs.sizer.intervened()
        t2 = time.perf_counter()
        draft, guide_ended = guide.draft(gen.output.y, NUDGE_TOKENS)
        words = split_words(b"".join(piece for _, piece in draft))
        checks = _Checks(runs, index)
        accepted = now(accept_words(words, lambda text: answered(checks.base_top(text)), s.gamma))
        # a word was refused: the base goes on from that check
        kept = checks.keep_last() if len(accepted) < len(words) else None
        checks.close()
        with _closed_unless_kept(kept):
            for pick in nudge_picks(draft, accepted, index, unsure.top1_prob, t_base=t_base,
                                    t_guide=time.perf_counter() - t2):
                yield pick
                index += 1
        pending = kept
        if guide_ended and len(accepted) == len(words):
            yield End(StopReason.GUIDE_EOS)
        elif not accepted:  # the guide wrote nothing usable: the base takes its own token here
            yield base_pick(unsure, index, t_base)

    yield from drive(gen, picks_at)


@contextlib.contextmanager
def _closed_unless_kept(run: Run | None) -> Iterator[None]:
    """Close ``run``'s stream where the answer ends before it is read on (the driver closed the
    picks inside the nudge)."""
    try:
        yield
    except GeneratorExit:
        if run is not None:
            run.positions.close()
        raise


class _Checks:
    """The base's first position after each candidate text, each from a chunk request whose stream
    stays open until the next check (or :meth:`keep_last`)."""

    def __init__(self, runs: BaseRuns, index: int) -> None:
        self.runs, self.index = runs, index
        self.last: tuple[Run, Position | None] | None = None

    def base_top(self, accepted: bytes) -> tuple[float, bytes]:
        self.close()
        run = self.runs.stream(accepted, self.index, check=True)
        first = self.runs.first(run)
        self.last = (run, first)
        if first is None:  # the base ends here: no word goes past its end
            return 1.0, b""
        top = max(first.top, key=first.top.__getitem__) if first.top else first.text
        return first.top1_prob, top.encode()

    def keep_last(self) -> Run | None:
        """The last check's stream with its first position put back, for the base to read on."""
        if self.last is None:
            return None
        run, first = self.last
        self.last = None
        self.runs.clock.checks_kept += 1
        return Run(_put_back(first, run.positions), run.asked, timed=False)

    def close(self) -> None:
        if self.last is not None:
            self.runs.closed_early(self.last[0], got=1)
            self.last = None


def _put_back(first: Position | None, stream: Generator[Position, None, None]
              ) -> Generator[Position, None, None]:
    try:
        if first is not None:
            yield first
        yield from stream
    finally:
        stream.close()
