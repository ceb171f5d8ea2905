"""``bench --chat`` on fake engines: the scripted chat grows, and reuse is what it reports."""

from __future__ import annotations

from blendin_local.bench.chat import TURNS, run_chat_bench

from fakes import fake_base, fake_guide, pair_of


def test_chat_bench_reports_reuse_only_in_reuse_mode() -> None:
    base, guide = fake_base(n_ctx=20_000), fake_guide(n_ctx=20_000)
    pair = pair_of(base, guide)
    report = run_chat_bench(pair, max_tokens=4, rounds=1)
    fresh, reuse = report["modes"]["fresh"]["rows"], report["modes"]["reuse"]["rows"]
    assert len(fresh) == len(reuse) == TURNS
    prompts = [r["prompt_tokens"] for r in fresh]
    assert prompts == sorted(prompts) and prompts[-1] > 4 * prompts[0] / 2
    assert [r["prompt_tokens"] for r in reuse] == prompts  # same chat in both modes
    assert all(r["cached_tokens"] == 0 for r in fresh)
    assert reuse[0]["cached_tokens"] == 0
    assert all(prev["prompt_tokens"] <= r["cached_tokens"] < r["prompt_tokens"]
               for prev, r in zip(reuse[:-1], reuse[1:], strict=True))
    assert all(r["ttft_s"] > 0 for r in fresh + reuse)
    assert report["target"]["target"] == "<= 1.5"
