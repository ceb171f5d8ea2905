"""``--compat paper`` against two real llama-cpp-python servers holding the default pair: it
reproduces the reference's recorded decisions step by step, sends one base request per step, and
refuses in one line what the reference's set-up lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import assert_one_line_error, run_cli

from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec
from blendin_local.paper.fidelity import TARGET, Report, load_recording, replay

RECORDING = Path(__file__).parent / "fixtures" / "paper" / "reference_steps.jsonl"
QUESTIONS_CHECKED = 2  # of the recording's answers, those with the most interventions (time bound)


@pytest.mark.integration
def test_paper_mode_reproduces_the_recorded_reference_steps(gemma_server, smollm_server):
    """Teacher-forced along the reference's own answers (recorded by scripts/reference_compare.py):
    same gate, α within 0.02 and same chosen string on at least 98 % of the steps."""
    rec = load_recording(RECORDING)
    h = rec.header
    assert h["gamma"] and h["max_tokens"] and len(rec.answers) >= 10
    by_interventions = sorted(range(len(rec.answers)),
                              key=lambda q: -sum(s["intervened"] for s in rec.steps_of(q)))
    questions = sorted(by_interventions[:QUESTIONS_CHECKED])
    base = RemoteModel(RemoteSpec(gemma_server, "gemma3-270m"))
    guide = RemoteModel(RemoteSpec(smollm_server, "smollm2-135m-instruct"))
    try:
        report = Report(list(replay(rec, base, guide, questions)))
    finally:
        base.close()
        guide.close()
    summary = report.summary()
    assert summary["steps"] == sum(len(rec.steps_of(q)) for q in questions)
    assert summary["interventions"] > 0, summary  # the blend path was exercised, not only the gate
    assert summary["agree"] >= TARGET, summary
    # one base request per step (+ one priming request per question), a guide request at each
    # intervention only (+ one priming request per question)
    assert base.traffic.requests == summary["steps"] + len(questions)
    interventions = sum(s["intervened"] for q in questions for s in rec.steps_of(q))
    assert interventions < guide.traffic.requests <= interventions + len(questions)


@pytest.mark.integration
def test_generate_in_paper_mode_asks_the_base_once_per_step(gemma_server, smollm_server):
    proc = run_cli("generate", "--json", "--compat", "paper", "--max-tokens", "6", "--gamma", "0.6",
                   "--base", f"{gemma_server}#gemma3-270m",
                   "--guide", f"{smollm_server}#smollm2-135m-instruct",
                   "Tom has 3 boxes with 12 apples each. How many apples does he have?", timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tokens"] == 6 and out["settings"]["compat"] == "paper"
    assert out["interventions"] > 0 and out["text"].strip()
    remote = out["remote"]
    # each server also got one GET /models when it was loaded
    assert remote["base"]["requests"] == 1 + out["tokens"]
    assert remote["guide"]["requests"] == 1 + out["interventions"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "nudging"], "--compat paper runs --method blendin or ensemble"),
    (["--temperature", "0.7"], "decodes greedily"),
    (["--cap", "0.2"], "--cap"),
])
def test_paper_mode_refuses_what_the_reference_lacks(args, needle):
    assert_one_line_error(run_cli("generate", "--compat", "paper", *args, "Q?"), needle)


@pytest.mark.integration
def test_paper_mode_needs_two_servers(gemma_server):
    proc = run_cli("generate", "--compat", "paper", "--base", f"{gemma_server}#gemma3-270m", "Q?")
    assert_one_line_error(proc, "--compat paper talks to two servers")
