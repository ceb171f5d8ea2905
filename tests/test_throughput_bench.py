"""``bench --throughput`` on the fake pair: every configuration runs and the report's ratios are
computed from its own numbers (speed targets themselves are checked by the bench, not here)."""

from __future__ import annotations

from blendin_local.bench.throughput import BATCHES, PROMPTS, Rate, raw_decode, run_throughput

from fakes import FakeGroup, cross_pair


def test_raw_decode_makes_every_token_in_shared_decodes() -> None:
    pair = cross_pair()
    rate = Rate()
    raw_decode(pair, 4, 10, rate)
    assert rate.tokens == len(PROMPTS) * 10
    group = pair.base._group  # type: ignore[union-attr]
    assert isinstance(group, FakeGroup) and max(group.batch_sizes) == 4
    assert group.decodes == 2 * 10  # two waves of four, a decode per token


def test_throughput_report_has_every_batch_and_target() -> None:
    report = run_throughput(cross_pair(), max_tokens=8, rounds=1)
    rates = report["tokens_per_s"]
    assert set(rates) == {"raw", "base", "blendin", "base one-answer path",
                          "blendin one-answer path"}
    assert all(rates[k][str(b)] > 0 for k in ("raw", "base", "blendin") for b in BATCHES)
    metrics = {t["metric"]: t for t in report["targets"]}
    raw = rates["raw"]
    ratio = raw["8"] / raw["1"]
    assert abs(metrics["raw batched decode B=8/B=1"]["value"] - ratio) < 0.05 * ratio
    assert metrics["base B=8/B=1 ÷ raw ratio"]["target"] == ">= 0.8"
    assert metrics["blendin B=8/B=1 ÷ raw ratio"]["target"] == ">= 0.7"
