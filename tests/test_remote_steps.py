"""The remote base's request policy (``methods.remote_chunks``): how many tokens each request asks for
(:class:`ChunkSizer`, :func:`best_chunk` from measured costs) and how long a server sharing the
machine is left to finish after a close (:class:`ServerClock`). Pure: no server, no clock."""

from __future__ import annotations

import math
import random

import pytest

from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec, is_loopback
from blendin_local.methods.remote_chunks import (
    GAIN,
    WASTE_SHARE,
    ChunkSizer,
    Costs,
    ServerClock,
    best_chunk,
    clock_for,
    positions_per_s,
    tokens_after_close,
    waste_share,
)


def simulate(sizer: ChunkSizer, runs: list[int], tokens: int,
             caps: list[int] | None = None) -> tuple[list[int], int]:
    """Drive ``sizer`` as the remote loop does over a base whose confident runs have the given
    lengths (each followed by an unsure position the guide decides), the measured costs' cap
    changing at every request (``caps`` cycled; None: no cap); the sizes asked and the
    interventions."""
    asked, index, interventions, pending = [], 0, 0, list(runs)
    run = pending.pop(0) if pending else tokens
    while index < tokens:
        k = sizer.ask(index, tokens - index, caps[len(asked) % len(caps)] if caps else None)
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


@pytest.mark.parametrize("seed", range(60))
def test_the_bound_holds_with_k_the_largest_chunk_asked_whatever_the_caps(seed):
    """Costs may call for another size at every request: K only grows while the bound with it holds."""
    rng = random.Random(seed)
    mean = rng.choice([1, 3, 5, 12, 40])
    runs = [int(rng.expovariate(1 / mean)) for _ in range(200)]
    tokens = rng.choice([24, 128, 300])
    caps = [rng.choice([1, 2, 3, 4, 8, 16]) for _ in range(rng.randint(1, 12))]
    asked, interventions = simulate(ChunkSizer(16), runs, tokens, caps)
    assert len(asked) <= interventions + math.ceil(tokens / max(asked)) + 1


def test_a_cap_of_one_is_the_per_token_loop_and_the_bound_then_keeps_k_at_one():
    asked, _ = simulate(ChunkSizer(16), [0, 3, 1, 7], 20, [1])
    assert asked == [1] * 20
    # a cap that grows later: K grows only as far as the bound with it allows (no slack: stays 1)
    asked, _ = simulate(ChunkSizer(16), [], 20, [1, 1, 1, 16])
    assert max(asked) == 1


def test_a_cap_grows_after_interventions_earn_slack():
    # every other request an intervention: the bound's slack lets K grow to the cap
    asked, _ = simulate(ChunkSizer(16), [0, 0, 0, 30], 40, [1, 1, 1, 16])
    assert asked[:3] == [1, 1, 1]
    assert max(asked) > 1


LOOPBACK_SHARED = Costs(first_s=0.100, step_s=0.110, close_s=0.15, unsure=0.2, waits=True)


def test_cheap_requests_on_shared_cores_ask_one_or_two_tokens():
    """RTT ~0, a request costs about a streamed step: a closed or drained chunk only wastes."""
    assert best_chunk(LOOPBACK_SHARED, 16) == 1
    cheaper_stream = Costs(first_s=0.100, step_s=0.080, close_s=0.15, unsure=0.2, waits=True)
    assert best_chunk(cheaper_stream, 16) <= 2


def test_a_long_round_trip_asks_long_chunks_where_runs_are_long():
    """50 ms of round trip against 10 ms per token: one request per run where runs are long."""
    far = Costs(first_s=0.060, step_s=0.010, close_s=0.0, unsure=0.02, waits=False, rtt_s=0.050)
    assert best_chunk(far, 16) == 16
    far_shared = Costs(first_s=0.060, step_s=0.010, close_s=0.0, unsure=0.02, waits=True)
    assert best_chunk(far_shared, 16) == 16


def test_the_server_decodes_a_round_trip_of_tokens_after_a_close():
    assert tokens_after_close(0.0, 0.010) == 2  # the token in flight and the one being written
    assert tokens_after_close(0.050, 0.010) == 6  # + the round trip's worth before it sees the close
    assert tokens_after_close(0.005, 0.040) == 2


@pytest.mark.parametrize("unsure", [0.2, 0.3, 0.5])
@pytest.mark.parametrize("rtt", [0.0, 0.005, 0.020, 0.050])
@pytest.mark.parametrize("waits", [True, False])
def test_chunks_are_never_sized_past_the_waste_limit(unsure, rtt, waits):
    """Runs of ~4 behind a round trip: a bigger chunk would be faster (a few per cent past 3 tokens),
    but a closed stream makes the server decode a round trip's worth of tokens for nobody."""
    costs = Costs(first_s=0.040 + rtt, step_s=0.038, close_s=0.01, unsure=unsure, waits=waits, rtt_s=rtt)
    k = best_chunk(costs, 16)
    assert waste_share(costs, k) <= WASTE_SHARE
    allowed = [j for j in range(1, 17) if waste_share(costs, j) <= WASTE_SHARE]
    # no chunk within the limit is more than GAIN faster than the one chosen
    assert max(positions_per_s(costs, j) for j in allowed) <= positions_per_s(costs, k) * (1 + GAIN) + 1e-9
    assert waste_share(costs, 16) > WASTE_SHARE  # the limit binds: without it K would be larger


def test_no_unsure_positions_ask_the_largest_chunk_unless_streaming_is_slower():
    never = Costs(first_s=0.020, step_s=0.010, close_s=0.0, unsure=0.0, waits=True)
    assert best_chunk(never, 16) == 16
    slow_stream = Costs(first_s=0.010, step_s=0.020, close_s=0.0, unsure=0.0, waits=True)
    assert best_chunk(slow_stream, 16) == 1


def test_more_than_one_token_only_where_the_costs_say_it_is_clearly_faster():
    """RTT 0, a request ~7 ms dearer than a streamed step: 2 tokens save ~4 % — inside the noise of
    a shared machine's timings, while a drained or closed chunk wastes: the per-token protocol."""
    close = Costs(first_s=0.045, step_s=0.038, close_s=0.01, unsure=0.2, waits=False)
    assert positions_per_s(close, 2) > positions_per_s(close, 1)
    assert best_chunk(close, 16) == 1


def test_positions_per_s_of_one_token_requests_is_one_over_the_first_wait():
    assert positions_per_s(LOOPBACK_SHARED, 1) == pytest.approx(10.0)


def test_the_clock_caps_from_what_it_measured():
    clock = ServerClock()
    assert clock.cap(16, guided=True, waits=True) == 2  # nothing measured: a 2-token probe
    assert clock.cap(16, guided=False, waits=True) == 16  # unguided: no unsure position to waste on
    clock.firsts.extend([0.100] * 3)
    clock.gaps.extend([0.110] * 3)
    assert clock.cap(16, guided=True, waits=True) == 1
    clock.stepped(0.110)
    clock.since_gap = 128  # 1-token requests have measured no streamed step for a while ...
    assert clock.cap(16, guided=True, waits=True) == 1  # ... but their wait has not moved: no probe
    clock.firsts.extend([0.130] * 4)  # it moved (a load): one 2-token probe
    assert clock.cap(16, guided=True, waits=True) == 2
    clock.firsts.clear()
    clock.firsts.extend([0.060] * 3)  # a 50 ms round trip appears
    clock.gaps.clear()
    clock.gaps.extend([0.010] * 3)
    assert 1 < clock.cap(16, guided=True, waits=False) < 16  # runs of ~4 (the prior): waste bounds K
    clock.positions, clock.unsure = 500, 5  # runs of ~100
    assert clock.cap(16, guided=True, waits=False) == 16


def test_a_request_after_a_closed_stream_counts_its_extra_wait_as_the_close_s_cost():
    clock = ServerClock()
    clock.firsts.extend([0.050] * 3)
    clock.gaps.extend([0.010] * 3)
    clock.firsts_after_close.extend([0.250] * 3)
    costs = clock.costs(guided=True, waits=False)
    assert costs is not None and costs.close_s == pytest.approx(0.200)


def test_one_clock_per_model_and_route_shared_by_clones():
    spec = RemoteSpec.parse("http://127.0.0.1:9/v1#m")
    a, b = RemoteModel(spec), RemoteModel(spec)
    twin = a.clone()  # as generate_many gives each answer of a batch
    assert clock_for(a.clocks, "u") is clock_for(a.clocks, "u")
    assert clock_for(twin.clocks, "u") is clock_for(a.clocks, "u")
    assert clock_for(a.clocks, "u") is not clock_for(a.clocks, "v")
    assert clock_for(a.clocks, "u") is not clock_for(b.clocks, "u")
    a.close()
    b.close()


def test_a_nudging_check_is_sized_as_a_request_mostly_closed_after_its_first_position():
    clock = ServerClock()
    clock.firsts.extend([0.060] * 3)  # 50 ms of round trip, 10 ms per token, runs of ~100
    clock.gaps.extend([0.010] * 3)
    clock.positions, clock.unsure = 500, 5
    assert clock.cap(16, guided=True, waits=False) == 16
    clock.checks, clock.checks_kept = 40, 30  # most checks refused a word: read on as runs
    assert clock.cap(16, guided=True, waits=False, check=True) > 1
    clock.checks, clock.checks_kept = 40, 8  # most were closed after their first position
    assert clock.cap(16, guided=True, waits=False, check=True) == 1


# 20 ms of round trip, 10 ms per token (a GPU server), unsure at 30 % of positions (runs of ~2.3)
FAR = dict(first_s=0.030, step_s=0.010, close_s=0.005, unsure=0.3, waits=False, rtt_s=0.020)


def test_kept_interventions_make_longer_runs_and_larger_chunks():
    closing = Costs(**FAR)
    keeping = Costs(**FAR, keeps_open=True, kept=0.9, guide_steps=1)
    assert best_chunk(keeping, 16) > best_chunk(closing, 16)
    assert waste_share(keeping, best_chunk(keeping, 16)) <= WASTE_SHARE


def test_an_open_stream_wastes_only_where_the_pick_changes():
    never_kept = Costs(**FAR, keeps_open=True, kept=0.0, guide_steps=2)
    always_kept = Costs(**FAR, keeps_open=True, kept=1.0, guide_steps=2)
    assert waste_share(always_kept, 16) == 0.0
    # a changed pick wastes what the server decoded while the guide decided, and after the close
    assert waste_share(never_kept, 16) > waste_share(Costs(**FAR), 16)


def test_the_clock_measures_the_kept_share_and_the_guides_decision_in_steps():
    clock = ServerClock()
    clock.firsts.extend([0.030] * 3)
    clock.gaps.extend([0.010] * 3)
    for kept in (True, True, True, False):
        clock.decided(0.025, kept=kept)
    costs = clock.costs(guided=True, waits=False, keeps_open=True)
    assert costs is not None and costs.keeps_open
    assert costs.guide_steps == 3  # 25 ms of guide at 10 ms per token
    assert 0.4 < costs.kept < 0.75  # 3 of 4, pulled towards the prior
    assert clock.costs(guided=True, waits=False, check=True, keeps_open=True).keeps_open is False


def test_a_kept_intervention_keeps_the_chunk_size():
    sizer = ChunkSizer(16)
    sizer.ask(0, 48)
    sizer.ran_out()
    grown = sizer.size
    sizer.intervened(read_on=True)
    assert sizer.size == grown and sizer.interventions == 1
    sizer.intervened()
    assert sizer.size == sizer.first and sizer.interventions == 2


def test_a_guide_slowed_beside_an_open_stream_shrinks_the_chunk():
    """Shared cores, 20 ms of round trip: chunks of 3 while the guide decides as fast beside a
    server still decoding as beside an idle one; 1 (no stream left open) where it is slowed by more
    than what a kept token saves."""
    def costs(open_s: float) -> Costs:
        return Costs(first_s=0.061, step_s=0.038, close_s=0.005, unsure=0.31, waits=True, rtt_s=0.020,
                     keeps_open=True, kept=0.45, guide_steps=2, open_s=open_s)

    assert best_chunk(costs(0.0), 16) == 3
    assert best_chunk(costs(0.060), 16) == 1


def test_the_clock_weighs_the_guides_decisions_beside_an_open_stream_against_the_others():
    clock = ServerClock()
    clock.firsts.extend([0.030] * 3)
    clock.gaps.extend([0.010] * 3)
    clock.decided(0.100, kept=True)
    clock.decided(0.060, kept=False, open_=False)  # not a decision of an open stream: not counted
    costs = clock.costs(guided=True, waits=True, keeps_open=True)
    assert costs is not None and costs.open_s == pytest.approx(0.040)
    assert clock.decided_open == clock.kept_open == 1
