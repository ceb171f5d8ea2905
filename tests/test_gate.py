"""The gate + cap (``methods/gate.py``), the one rule every gating loop asks."""

from __future__ import annotations

import pytest

from blendin_local.methods.gate import gate_open
from blendin_local.settings import CAP_WARMUP


def test_the_guide_speaks_only_below_gamma() -> None:
    assert gate_open(0.39, 0.4, None, 0, 0)
    assert not gate_open(0.4, 0.4, None, 0, 0)  # b == γ: the base keeps the token
    assert not gate_open(0.9, 0.4, None, 0, 50)
    assert not gate_open(0.0, 0.0, None, 0, 0)  # γ 0: never


def test_no_cap_means_every_unsure_step() -> None:
    assert gate_open(0.1, 0.4, None, 100, 100)


@pytest.mark.parametrize("cap", [0.0, 0.25, 1.0])
def test_the_cap_waits_for_the_warm_up(cap: float) -> None:
    for index in range(CAP_WARMUP):  # even with every step so far an intervention (or cap 0)
        assert gate_open(0.1, 0.4, cap, index, index)


def test_cap_zero_closes_the_gate_after_the_warm_up() -> None:
    assert not gate_open(0.1, 0.4, 0.0, 0, CAP_WARMUP)


def test_the_cap_is_a_share_of_the_steps_so_far() -> None:
    n = 2 * CAP_WARMUP
    assert gate_open(0.1, 0.4, 0.25, n // 4 - 1, n)
    assert not gate_open(0.1, 0.4, 0.25, n // 4, n)  # at the cap: closed
    assert not gate_open(0.5, 0.4, 0.25, 0, n)  # above γ the cap does not matter
