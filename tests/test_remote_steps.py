"""The remote base's request policy (``methods.remote_steps``): how many tokens each request asks for
(:class:`ChunkSizer`) and how long a server sharing the machine is left to finish after a close
(:class:`ServerClock`). Pure: no server, no clock."""

from __future__ import annotations

import math
import random

import pytest

from blendin_local.engines.remote.engine import is_loopback
from blendin_local.methods.remote_steps import ChunkSizer, ServerClock


def simulate(sizer: ChunkSizer, runs: list[int], tokens: int) -> tuple[list[int], int]:
    """Drive ``sizer`` as the remote loop does over a base whose confident runs have the given
    lengths (each followed by an unsure position the guide decides); the sizes asked and the
    interventions."""
    asked, index, interventions, pending = [], 0, 0, list(runs)
    run = pending.pop(0) if pending else tokens
    while index < tokens:
        k = sizer.ask(index, tokens - index)
        asked.append(k)
        if run < k:  # the unsure position is in this chunk: the guide's token follows
            index += run + 1
            interventions += 1
            sizer.intervened()
            run = pending.pop(0) if pending else tokens
        else:
            index += k
            run -= k
            sizer.ran_out()
    return asked, interventions


def test_small_after_an_intervention_then_doubling_up_to_the_largest():
    sizer = ChunkSizer(16, interventions=8)  # slack in the bound: the sizes are the policy's own
    asked, _ = simulate(sizer, [0, 2, 40], 60)
    # 0 and 2 confident tokens: 4 each; 40: 4, 8, 16, 16 (unsure at 12); to the end: 4, 8, 3
    assert asked == [4, 4, 4, 8, 16, 16, 4, 8, 3]


def test_with_no_slack_a_chunk_must_earn_the_next_request():
    """At an answer's start only the bound's +1 is spare: the first chunk is the largest, and after
    early interventions the chunks shrink as the answer's tokens earn requests."""
    asked, _ = simulate(ChunkSizer(16), [0, 2, 40], 60)
    assert asked == [16, 15, 12, 16, 16, 4, 11]


def test_one_token_per_request_is_the_reference_loop():
    asked, _ = simulate(ChunkSizer(1), [0, 3, 1], 12)
    assert asked == [1] * 12


def test_never_past_the_answers_end():
    assert ChunkSizer(16).ask(0, 5) == 5
    assert ChunkSizer(16).ask(126, 2) == 2


@pytest.mark.parametrize("largest", [2, 4, 16, 32])
@pytest.mark.parametrize("seed", range(40))
def test_requests_stay_within_interventions_plus_tokens_over_k_plus_one(largest, seed):
    """The bound the bench checks per answer holds by construction, whatever the runs are."""
    rng = random.Random(seed)
    mean = rng.choice([1, 3, 5, 12, 40])
    runs = [int(rng.expovariate(1 / mean)) for _ in range(200)]
    tokens = rng.choice([24, 128, 300])
    asked, interventions = simulate(ChunkSizer(largest), runs, tokens)
    assert max(asked) <= largest
    assert len(asked) <= interventions + math.ceil(tokens / largest) + 1


def test_the_bound_is_what_keeps_chunks_large_when_runs_are_long():
    """Runs just longer than the first chunk: without the credit rule every run would take two
    requests; with it the sizer stops shrinking once the bound's slack is spent."""
    runs = [4] * 30
    asked, interventions = simulate(ChunkSizer(16), runs, 150)
    assert len(asked) <= interventions + math.ceil(150 / 16) + 1
    assert asked.count(4) < len(runs)  # some chunks had to stay larger than the first size


def test_settle_is_two_positions_on_loopback_and_never_past_the_chunk():
    clock = ServerClock()
    assert clock.settle_s(5) == 0.0  # nothing measured yet: no wait
    clock.gaps.extend([0.010, 0.011, 0.010])
    clock.firsts.extend([0.010, 0.012])  # first position ~ one position's time: no network
    assert clock.rtt_s == 0.0
    assert clock.settle_s(5) == pytest.approx(0.020)
    assert clock.settle_s(1) == pytest.approx(0.010)
    assert clock.settle_s(0) == 0.0  # the unsure position was the chunk's last: the server stopped


def test_settle_with_a_round_trip_waits_for_the_close_to_reach_the_server():
    clock = ServerClock()
    clock.gaps.extend([0.010] * 4)
    clock.firsts.extend([0.060, 0.070])  # 50 ms of round trip
    assert clock.rtt_s == pytest.approx(0.050)
    # the close arrives 25 ms after the unsure position left the server; it sees it at its next
    # write (5 positions on) and stops after the one then decoding: 6 × 10 ms − 25 ms
    assert clock.settle_s(16) == pytest.approx(0.035)
    assert clock.settle_s(2) == 0.0  # the chunk ended before the client could see it


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:8000/v1", True), ("http://localhost:1/v1", True), ("http://[::1]:8/v1", True),
    ("http://127.3.2.1/v1", True), ("http://10.0.0.2:8000/v1", False), ("https://gpu-box/v1", False),
])
def test_a_loopback_server_shares_the_machine(url, local):
    assert is_loopback(url) is local
