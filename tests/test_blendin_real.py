"""BlendIn on the real cross-tokenizer default pair (spec §2–§7): traces, replay, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from blendin_local.generation.generate import generate
from blendin_local.generation.sampling import SamplingSettings
from blendin_local.prompts import Conversation
from blendin_local.replay.teacher_forcing import replay
from blendin_local.settings import GenerationSettings

pytestmark = pytest.mark.integration
CONV = Conversation.single("Explain why the sky is blue.")
CLI = [sys.executable, "-m", "blendin_local.cli"]


def test_trace_has_a_record_per_token_whose_provenance_counts_match_the_summary(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace.jsonl"
    proc = subprocess.run(
        [*CLI, "generate", "Explain why the sky is blue.", "--max-tokens", "40", "--json",
         "--trace", str(trace), "--n-ctx", "1024"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == summary["tokens"] > 0
    assert Counter(r["provenance"] for r in records) == Counter(summary["by_provenance"])
    assert sum(r["intervened"] for r in records) == summary["interventions"] > 0
    assert "".join(r["text"] for r in records) == summary["text"]
    for r in records:  # spec §7 fields
        assert len(r["base_top"]) == 5 and r["entropy_base"] is not None
        if r["intervened"]:
            assert len(r["guide_top"]) == 5
            assert r["overlap10"] is not None and r["jsd"] is not None and r["alpha"] is not None


def test_replay_of_a_greedy_blendin_answer_chooses_its_token_at_every_step(real_pair) -> None:
    settings = GenerationSettings(max_tokens=48)
    gen = generate(real_pair, CONV, settings)
    steps = list(gen)
    assert gen.result.interventions > 0
    rows = list(replay(real_pair, CONV, settings, [s.token for s in steps], batched=False))
    assert [r.index for r in rows if not r.matches] == []
    assert [r.intervened for r in rows] == [s.intervened for s in steps]


def test_seeded_blendin_sampling_is_reproducible(real_pair) -> None:
    def run(seed: int) -> list[int]:
        s = GenerationSettings(max_tokens=24, sampling=SamplingSettings(temperature=0.9, seed=seed))
        return [st.token for st in generate(real_pair, CONV, s)]

    first = run(3)
    assert run(3) == first
    assert any(run(seed) != first for seed in (4, 5, 6))


@pytest.mark.parametrize(
    ("method", "support"),
    [("nudging", "full"), ("ensemble", "full"), ("blendin", "top100")],
)
def test_every_method_answers_on_the_real_pair(real_pair, method: str, support: str) -> None:
    conv = Conversation.single("What is the capital of France?")
    gen = generate(real_pair, conv, GenerationSettings(method=method, support=support,
                                                       max_tokens=40))
    steps = list(gen)
    r = gen.result
    assert steps and r.stop_reason is not None
    assert "".join(s.text for s in steps) == r.text
    assert "Paris" in r.text


def test_proxy_with_the_guide_as_its_own_anti_expert_writes_the_base_answer(real_pair) -> None:
    from dataclasses import replace

    from blendin_local.models import load_engine

    anti = load_engine("smollm2-135m-instruct", n_ctx=1024)
    try:
        pair = replace(real_pair, anti=anti)
        conv = Conversation.single("What is the capital of France?")
        base = [s.token for s in generate(pair, conv, GenerationSettings(method="base",
                                                                        max_tokens=24))]
        proxy_gen = generate(pair, conv, GenerationSettings(method="proxy", max_tokens=24))
        proxy = [s.token for s in proxy_gen]
        assert proxy == base
        assert proxy_gen.result.interventions == len(proxy)  # proxy runs the guides every step
    finally:
        anti.close()


def test_bench_reports_every_ratio_with_its_target() -> None:
    """The benchmark runs end to end; its speed targets are read by people, not asserted here."""
    proc = subprocess.run([*CLI, "bench", "--max-tokens", "8", "--rounds", "1", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["runs"]) == {"llama-cpp-python", "base", "blendin", "always", "guide"}
    assert all(r["tokens"] > 0 for r in report["runs"].values())
    assert report["runs"]["always"]["intervention_rate"] == 1.0
    assert [r["target"] for r in report["ratios"]] == ["<= 1.1", "<= 1.05", ">= 0.95", "<= 1.0",
                                                      "<= 1.5"]
    assert all(r["value"] > 0 for r in report["ratios"])
