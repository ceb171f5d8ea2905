"""``eval`` and ``diagnose`` end to end on the real default pair (small: a few seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from blendin_local.cli import cli

FIX = Path(__file__).parent / "fixtures" / "eval"
pytestmark = pytest.mark.integration


def test_eval_real_pair_limit_2_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["eval", "--task", "gsm8k", "--data", str(FIX / "gsm8k.jsonl"), "--methods",
            "base,guide,blendin", "--limit", "2", "--max-tokens", "24", "--n-ctx", "1024",
            "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert {r["method"] for r in records} == {"base", "guide", "blendin"}
    for r in records:
        assert r["error"] is None and 0 < r["tokens"] <= 24 and r["seconds"] > 0
        assert r["answer"] in ("5", "24")
        assert r["correct"] == (r["prediction"] == r["answer"])
    assert all(r["interventions"] == 0 for r in records if r["method"] == "base")
    assert (out / "summary.md").read_text().count("\n| ") == 4  # header + 3 rows
    assert (out / "accuracy_vs_gamma.png").read_bytes()[:4] == b"\x89PNG"
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0 and "all 6 answers already in" in again.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 6


def test_diagnose_real_pair(tmp_path: Path) -> None:
    fig = tmp_path / "diagnose.png"
    result = CliRunner().invoke(
        cli, ["diagnose", "--limit", "2", "--max-tokens", "16", "--n-ctx", "1024", "--figure",
              str(fig), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["identity"] is False and data["coverage"]["exact"] > 80  # spec: 93.9% exact
    assert 0 < data["steps"] <= 32
    rates = [g["rate"] for g in data["by_gamma"]]
    assert rates == sorted(rates)  # a higher γ never intervenes less
    assert data["verdict"] and data["reasons"]
    assert fig.read_bytes()[:4] == b"\x89PNG"
