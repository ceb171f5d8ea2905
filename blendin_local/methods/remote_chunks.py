"""How many tokens each request to a remote base asks for, from what requests and streamed tokens
are measured to cost (a pure policy, used by :class:`remote_steps.BaseRuns`).

A request costs its first position's wait (the round trip, the server's request overhead, one
decode); every further position of a stream costs one streamed step. A stream that goes past the
base's next unsure position costs what the server decodes there for nobody: on a server that shares
this machine the client waits for those tokens (its local guide must not fight the server for the
cores), and a llama-server slot closed mid-stream delays the next request. So: requests cheap
against that waste (loopback, shared cores) → ask 1–2 tokens, the per-token protocol at worst; a
long round trip → ask up to the expected run length and beyond (:func:`best_chunk`).

A stream kept open through an unsure position (``Costs.keeps_open``) ends only where the blend
changes the base's token there: the server goes on decoding while the guide decides, a kept token
reads on from the same stream, and only a changed one closes it, with what the server decoded
meanwhile wasted. Its runs then end at a share ``(1 - kept)`` of the unsure positions.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

FIRST_CHUNK = 4  # tokens asked right after an intervention (the default pair's runs average ~4)
IN_FLIGHT = 2  # tokens llama-server decodes after a client closes its stream (README: "client disconnect")
DRAIN = 3  # at most this many tokens left in a chunk: read them rather than close (server on this machine)
READ_ON = 0.4  # share of drained rests the blend reads on (the base's token kept: 12/28, 29/64 measured)
KEPT_PRIOR = (READ_ON, 10)  # share of unsure positions whose blend keeps the base's token, and its weight
UNSURE_PRIOR = (0.2, 10)  # unsure share of positions before any is seen, and its weight in positions
PROBE = 2  # tokens asked to measure a streamed step: at worst one token read for nobody
PROBE_EVERY = 128  # requests without a streamed step measured before a 2-token probe: rare, since a
#                    probe makes K = 2 the bound of its whole answer (about 1 request in 5 then 2 tokens)
MOVED = 0.25  # ... and only where a request's wait moved by this share since the step was measured
GAIN = 0.05  # more than one token is asked only where the costs say it is this much faster: on a
#              shared machine the measured costs move by more, and a chunk past an unsure position wastes
CHECK_CLOSED_PRIOR = (0.5, 10)  # share of nudging word checks closed after their first position
WASTE_SHARE = 0.2  # at most this many tokens decoded for nobody per token kept (the target is 0.25)


@dataclass(frozen=True)
class Costs:
    """What the client has measured of one server: seconds to a request's first position, per
    further streamed position, extra to the first position of a request sent right after a closed
    stream; the share of positions that are unsure; whether the client waits for a server sharing
    its cores to finish what it decodes past an unsure position; the round trip."""

    first_s: float
    step_s: float
    close_s: float
    unsure: float
    waits: bool
    rtt_s: float = 0.0
    keeps_open: bool = False  # the stream stays open through unsure positions (module docstring)
    kept: float = 0.0  # ... the share of them whose blend keeps the base's token (read on)
    guide_steps: int = 0  # ... tokens the server decodes while the guide decides, past the position
    open_s: float = 0.0  # ... the guide's extra seconds per decision beside a server still decoding


def _ends_run(costs: Costs) -> float:
    """The probability that a position ends its request's run."""
    return costs.unsure * (1 - costs.kept) if costs.keeps_open else costs.unsure


def best_chunk(costs: Costs, limit: int) -> int:
    """The chunk size in 1..``limit`` with the most positions per second of the client's waiting,
    positions being unsure independently with probability ``costs.unsure``, among those whose
    server decodes at most ``WASTE_SHARE`` tokens for nobody per position kept (past ~3 tokens the
    rate gains a few per cent while a closed stream's waste grows with the round trip). Ties go to
    the smaller chunk; more than one token only where that is ``GAIN`` faster than one."""
    one = positions_per_s(costs, 1)
    best, best_rate = 1, one * (1 + GAIN)
    for k in range(2, limit + 1):
        if waste_share(costs, k) > WASTE_SHARE:
            continue
        rate = positions_per_s(costs, k)
        if rate > best_rate * (1 + 1e-9):
            best, best_rate = k, rate
    return best


def positions_per_s(costs: Costs, k: int) -> float:
    """Expected positions per second of waiting for requests of ``k`` tokens."""
    q, step = _ends_run(costs), costs.step_s
    positions = seconds = 0.0
    for i in range(1, k + 1):  # the first unsure position is the i-th: the rest of the chunk is waste
        p = (1 - q) ** (i - 1) * q
        positions += p * i
        seconds += p * (costs.first_s + (i - 1) * step + _waste_s(costs, k - i))
    p = (1 - q) ** k  # every position confident: the chunk is used up
    positions += p * k
    seconds += p * (costs.first_s + (k - 1) * step)
    if costs.keeps_open:
        seconds += costs.open_s * _open_decisions(costs, k)
    return positions / seconds if seconds > 0 else float(k)


def _open_decisions(costs: Costs, k: int) -> float:
    """Expected unsure positions per request of ``k`` decided with the stream open (any but the
    chunk's last position)."""
    q = _ends_run(costs)
    return sum((1 - q) ** (j - 1) * costs.unsure for j in range(1, k))


def waste_share(costs: Costs, k: int) -> float:
    """Expected tokens the server decodes for nobody per position kept, for requests of ``k``."""
    q = _ends_run(costs)
    wasted = positions = 0.0
    for i in range(1, k + 1):
        p = (1 - q) ** (i - 1) * q
        positions += p * i
        wasted += p * _wasted_tokens(costs, k - i)
    positions += (1 - q) ** k * k
    return wasted / positions if positions > 0 else 0.0


def tokens_after_close(rtt_s: float, step_s: float) -> int:
    """Tokens llama-server decodes for a stream closed at a position before it stops: the close
    reaches it half a round trip later, it sees it when it next writes a token, and finishes the
    token it is then decoding (README: "client disconnect")."""
    if rtt_s <= 0 or step_s <= 0:
        return IN_FLIGHT
    return 1 + max(1, math.ceil(rtt_s / step_s))


def _wasted_tokens(costs: Costs, left: int) -> float:
    """Tokens decoded for nobody past an unsure position with ``left`` tokens left in the chunk."""
    if left <= 0:
        return 0.0
    after_close = tokens_after_close(costs.rtt_s, costs.step_s)
    if costs.keeps_open:
        return float(min(left, costs.guide_steps + after_close))
    if costs.waits and left <= DRAIN:
        return left * (1 - READ_ON)
    return float(min(left, after_close))


def _waste_s(costs: Costs, left: int) -> float:
    """The client's cost of a chunk with ``left`` tokens past its unsure position (see ``BaseRuns``:
    on shared cores at most ``DRAIN`` left are read to the end, more are closed and waited for)."""
    if left <= 0:
        return 0.0
    if costs.keeps_open:  # closed after the guide decided: the next request waits for the slot
        return costs.close_s
    if costs.waits and left <= DRAIN:
        return left * costs.step_s * (1 - READ_ON)
    return costs.close_s + (min(left, IN_FLIGHT) * costs.step_s if costs.waits else 0.0)


@dataclass
class ChunkSizer:
    """How many tokens each base request of one answer asks for (a pure policy).

    ``cap`` (at each :meth:`ask`; default ``largest``, i.e. ``--remote-chunk``) is the size the
    costs call for. After an intervention ask for ``first`` tokens and double while chunks are used
    up, up to the cap. The request bound, interventions + ⌈tokens / K⌉ + 1 with K the largest chunk
    asked in the answer, holds by construction: ``credit`` is what the bound still allows, a chunk
    is never so small that using it up would leave the next request over the bound, and K grows
    only while the bound with the new K holds. So an answer's first chunk asks for the cap (no
    slack yet) and chunks shrink as the answer's tokens earn slack."""

    largest: int
    first: int = FIRST_CHUNK
    requests: int = 0
    interventions: int = 0
    used: int = 0  # the largest chunk asked so far: the bound's K
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = min(self.first, self.largest)

    def credit(self, tokens: int, k: int | None = None) -> float:
        """Requests the bound with K = ``k`` (default: the largest asked) still allows beyond those
        sent, ``tokens`` into the answer."""
        return 1 + self.interventions + tokens / (k or self.used or self.largest) - self.requests

    def ask(self, tokens: int, left: int, cap: int | None = None) -> int:
        """The next request's size, ``tokens`` into the answer with ``left`` to go (counts it)."""
        cap = max(1, min(cap or self.largest, self.largest))
        k_bound = max(self.used, self._grown(tokens, cap))
        # used up, this chunk must earn the next request: credit - 1 + k / K >= 1
        need = math.ceil(k_bound * (2 - self.credit(tokens, k_bound)) - 1e-9)
        k = max(1, min(max(min(self.size, cap), need), k_bound, left))
        self.requests += 1
        self.used = max(self.used, k)
        return k

    def _grown(self, tokens: int, cap: int) -> int:
        """The largest K up to ``cap`` for which the bound still holds (credit >= 1)."""
        spent = self.requests - self.interventions
        return cap if spent <= 0 else max(1, min(cap, math.floor(tokens / spent + 1e-9)))

    def ran_out(self) -> None:
        """The last chunk was used up: the base is on a confident run, ask for more."""
        self.size = min(2 * self.size, self.largest)

    def intervened(self, *, read_on: bool = False) -> None:
        """The guide chose a token at an unsure position; ``read_on``: the base's own, and its
        stream, kept open, goes on (the run did not end: the chunk size stays)."""
        self.interventions += 1
        if not read_on:
            self.size = min(self.first, self.largest)


@dataclass
class ServerClock:
    """One server's pace as the client sees it, kept across answers: seconds between streamed
    positions, the wait for a request's first position (apart: those sent right after a closed
    stream), how many positions were read and unsure, and how many nudging word checks were sent
    and kept (read on as the base's next run; the others are closed after their first position);
    and, for streams kept open through unsure positions, how many of those were decided, how many
    kept the base's token, and how long the guide took to decide."""

    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    firsts: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    firsts_after_close: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    decisions: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    decisions_shut: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    positions: int = 0
    unsure: int = 0
    decided_open: int = 0
    kept_open: int = 0
    checks: int = 0
    checks_kept: int = 0
    since_gap: int = 0  # requests since a streamed step was last measured
    first_at_gap: float = 0.0  # the median first-position wait when a streamed step was last measured

    @property
    def step_s(self) -> float:
        return statistics.median(self.gaps) if self.gaps else 0.0

    def stepped(self, gap: float) -> None:
        """A streamed step of ``gap`` seconds was measured."""
        self.gaps.append(gap)
        self.since_gap = 0
        self.first_at_gap = statistics.median(self.firsts) if self.firsts else 0.0

    def _first_moved(self) -> bool:
        if not self.firsts or self.first_at_gap <= 0:
            return True
        return abs(statistics.median(self.firsts) / self.first_at_gap - 1) > MOVED

    def decided(self, seconds: float, *, kept: bool, open_: bool = True) -> None:
        """The guide decided in ``seconds`` at an unsure position of a stream kept open (``open_``;
        else one where the chunk had ended: the server idle), and the blend kept the base's token
        there (``kept``) or changed it."""
        if not open_:
            self.decisions_shut.append(seconds)
            return
        self.decisions.append(seconds)
        self.decided_open += 1
        self.kept_open += kept

    def _open_costs(self) -> dict[str, Any]:
        share, weight = KEPT_PRIOR
        kept = (self.kept_open + share * weight) / (self.decided_open + weight)
        decide = statistics.median(self.decisions) if self.decisions else 0.0
        steps = math.ceil(decide / self.step_s - 1e-9) if self.step_s > 0 else 0
        alone = statistics.median(self.decisions_shut) if self.decisions_shut else decide
        return {"keeps_open": True, "kept": kept, "guide_steps": steps, "open_s": max(0.0, decide - alone)}

    @property
    def rtt_s(self) -> float:
        return max(0.0, min(self.firsts) - self.step_s) if self.firsts else 0.0

    def settle_s(self, left_in_chunk: int) -> float:
        """How long after an unsure position arrived the server is still decoding tokens for a
        stream closed there: it learns of the close half a round trip later, sees it when it next
        writes a token, and stops after the token it is then decoding (never past the chunk)."""
        step = self.step_s
        if step <= 0 or left_in_chunk <= 0:
            return 0.0
        rtt = self.rtt_s
        return max(0.0, min(left_in_chunk, tokens_after_close(rtt, step)) * step - rtt / 2)

    def costs(self, *, guided: bool, waits: bool, check: bool = False,
              keeps_open: bool = False) -> Costs | None:
        """The measured costs, or None before a first position and a streamed step are. For a
        nudging word check, a request mostly closed after its first position: it counts as an
        unsure position there. ``keeps_open``: streams stay open through unsure positions."""
        if not self.firsts or not self.gaps:
            return None
        first = statistics.median(self.firsts)
        after = statistics.median(self.firsts_after_close) if self.firsts_after_close else first
        share, weight = UNSURE_PRIOR
        unsure = (self.unsure + share * weight) / (self.positions + weight) if guided else 0.0
        if check:
            share, weight = CHECK_CLOSED_PRIOR
            unsure = max(unsure, (self.checks - self.checks_kept + share * weight) / (self.checks + weight))
        extra = self._open_costs() if keeps_open and guided and not check else {}
        return Costs(first, self.step_s, max(0.0, after - first), unsure, waits, self.rtt_s, **extra)

    def cap(self, limit: int, *, guided: bool, waits: bool, check: bool = False,
            keeps_open: bool = False) -> int:
        """The chunk size the measured costs call for (:func:`best_chunk`). Before anything is
        measured a 2-token probe (``limit`` unguided), and the probe again where 1-token requests
        have measured no streamed step for a while and the requests' wait has moved since (a round
        trip or a load appeared). (A larger first guess costs the whole answer: the request
        bound's K is the largest chunk it asked.)"""
        costs = self.costs(guided=guided, waits=waits, check=check, keeps_open=keeps_open)
        if costs is None:
            return limit if not guided else min(PROBE, limit)
        k = best_chunk(costs, limit)
        if k == 1 and not check and self.since_gap >= PROBE_EVERY and self._first_moved():
            return min(PROBE, limit)
        return k


def clock_for(clocks: MutableMapping[str, Any], route: str) -> ServerClock:
    """The clock of a model reached at ``route`` (a URL: the same server behind a delay proxy is
    another clock) in ``clocks``, the model's (``RemoteModel.clocks``, shared by its clones: every
    answer of a batch reads and feeds one clock)."""
    clock = clocks.setdefault(route, ServerClock())
    assert isinstance(clock, ServerClock)
    return clock
