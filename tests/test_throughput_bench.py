"""``bench --throughput`` on the fake pair: every configuration runs and the report's ratios are
computed from its own numbers (speed targets themselves are checked by the bench, not here); the
anchor row against the real llama-server, and in one line where it is missing or fails."""

from __future__ import annotations

import pytest

from blendin_local.bench.anchor import Anchor
from blendin_local.bench.throughput import (
    ANCHOR_ROW,
    BATCHES,
    PROMPTS,
    Rate,
    print_throughput,
    raw_decode,
    run_throughput,
)

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


@pytest.mark.integration
def test_the_anchor_row_times_llama_server_with_one_and_eight_slots(default_models, llama_server_binary):
    """The real llama-server holding the default base, 8 streamed clients of 4 tokens each at
    -np 1 and -np 8; its ratio joins the targets beside base's and blendin's."""
    anchor = Anchor(default_models["gemma3-270m"], n_ctx=256, threads=1, binary=str(llama_server_binary))
    report = run_throughput(cross_pair(), max_tokens=4, rounds=1, anchor=anchor)
    server = report["llama_server"]
    assert server["tokens"] == {"1": len(PROMPTS) * 4, "8": len(PROMPTS) * 4}  # EOS ignored
    rates = report["tokens_per_s"]
    by_np = rates[ANCHOR_ROW]
    assert set(by_np) == {"1", "8"} and all(v > 0 for v in by_np.values())
    metrics = {t["metric"]: t for t in report["targets"]}
    server_ratio = by_np["8"] / by_np["1"]
    assert abs(metrics["llama-server -np 8/-np 1"]["value"] - server_ratio) < 0.01 * server_ratio
    for method in ("base", "blendin"):
        row = metrics[f"{method} B=8/B=1 ÷ llama-server's"]
        ours = rates[method]["8"] / rates[method]["1"]
        assert row["target"] == ">= 1.0"
        assert abs(row["value"] - ours / server_ratio) < 0.02 * ours / server_ratio


def test_without_llama_server_the_anchor_row_says_how_to_get_it_and_the_rest_runs(
        tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("BLENDIN_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    anchor = Anchor(tmp_path / "base.gguf", n_ctx=256, threads=1)
    report = run_throughput(cross_pair(), max_tokens=4, rounds=1, anchor=anchor)
    assert set(report["llama_server"]) == {"not_run"}
    assert report["llama_server"]["not_run"].startswith(
        "llama-server not found: build it with `make llama-server`")
    assert ANCHOR_ROW not in report["tokens_per_s"] and report["tokens_per_s"]["base"]["8"] > 0
    assert not any("llama-server" in t["metric"] for t in report["targets"])
    print_throughput(report)
    lines = [line for line in capsys.readouterr().out.splitlines() if "anchor" in line]
    assert lines == ["llama-server anchor: not run: " + report["llama_server"]["not_run"]]


def test_a_server_that_cannot_start_is_one_line_and_the_rest_runs(tmp_path, llama_server_binary) -> None:
    bad = tmp_path / "base.gguf"
    bad.write_bytes(b"not a gguf")
    anchor = Anchor(bad, n_ctx=256, threads=1, binary=str(llama_server_binary))
    report = run_throughput(cross_pair(), max_tokens=4, rounds=1, anchor=anchor)
    missing = report["llama_server"]["not_run"]
    assert missing.startswith("llama-server failed: llama-server (base.gguf) exited while starting")
    assert "\n" not in missing and report["tokens_per_s"]["raw"]["8"] > 0
