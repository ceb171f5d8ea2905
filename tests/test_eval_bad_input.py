"""The bad-input battery (issue 9) for ``eval`` and ``diagnose``, through ``main()`` on the scripted
fake pair: one line on stderr, a non-zero exit, no traceback, nothing of the user's lost."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_line_error, run_main
from test_eval_diagnose import fake_pair as diagnose_pair
from test_eval_runner import GSM, Q, make_pair

from blendin_local.evaluation import commands
from blendin_local.pair import ModelPair


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(opts: dict[str, Any], methods: list[str]) -> ModelPair:
        return diagnose_pair() if methods == ["blendin"] and opts.get("diagnose") else make_pair()

    monkeypatch.setattr(commands, "pair_from_options", load)


def eval_args(out: Path, *more: str) -> list[str]:
    return ["eval", "--task", "gsm8k", "--data", str(GSM), "--max-tokens", "40",
            "--out", str(out), *more]


# --- 4: plots at 0 % and 100 % ------------------------------------------------------------------
@pytest.mark.parametrize("gold, expect", [
    # 0/3 gave a Wilson low of 5.55e-17 > 0: a negative error bar, and matplotlib refused it.
    ({"pens": 5, "bike": 1300, "cat": 25}, {"base": 0, "guide": 2}),
    ({"pens": 5}, {"base": 0, "guide": 1}),  # 0 % and 100 %
])
def test_plots_at_zero_and_full_accuracy(gold: dict[str, int], expect: dict[str, int],
                                         tmp_path: Path, fake_models: None) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"question": Q[k], "answer": f"#### {v}"}) + "\n"
                            for k, v in gold.items()))
    out = tmp_path / "run"
    proc = run_main("eval", "--task", "gsm8k", "--data", str(data), "--max-tokens", "40",
                    "--methods", "base,guide,blendin", "--gamma", "0,0.4", "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    records = [json.loads(ln) for ln in (out / "records.jsonl").read_text().splitlines()]
    for method, right in expect.items():
        assert sum(r["correct"] for r in records if r["method"] == method) == right, method
    # γ = 0 never opens the gate: blendin's points (with error bars) sit at the base's 0 %.
    assert not any(r["correct"] for r in records if r["setting"].startswith("gamma=0,"))
    for name in ("accuracy_vs_gamma", "accuracy_vs_rate", "alpha_hist", "overlap_correct_wrong"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
