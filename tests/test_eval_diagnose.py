"""``diagnose``: numbers along the always-blend trajectory, and a verdict grounded in them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blendin_local.commands import diagnose as commands
from blendin_local.errors import UsageError
from blendin_local.evaluation.diagnose import Diagnosis, StepSample, diagnose, figure
from blendin_local.pair import ModelPair

from fakes.scripted import capital_pair

FIX = Path(__file__).parent / "fixtures" / "eval"
GOOD_COVERAGE = {"exact": 93.9, "approximate": 3.0, "dropped": 3.0, "end→EOS": 0.1}


def diag(steps: list[tuple[float, float | None, bool]], coverage: dict[str, float] | None = None,
         identity: bool = False) -> Diagnosis:
    d = Diagnosis(coverage=coverage or GOOD_COVERAGE, identity=identity, prompts=1, gamma=0.4)
    d.steps = [StepSample(b, o, None if o is None else o, changed) for b, o, changed in steps]
    return d


def test_rates_and_overlaps_at_a_gamma_are_hand_computable() -> None:
    d = diag([(0.1, 0.2, True), (0.3, 0.6, False), (0.5, 0.9, False), (0.9, 1.0, False)])
    at = d.at(0.4)
    assert (at["interventions"], at["rate"]) == (2, 0.5)
    assert at["overlap10"] == pytest.approx(0.4)  # only the steps with b < 0.4
    assert at["guide_changed"] == 0.5
    assert d.at(0.05)["rate"] == 0.0 and d.at(0.05)["overlap10"] is None
    assert d.at(2.0)["rate"] == 1.0
    assert d.confidence_quantiles()["p50"] == pytest.approx(0.4)


def test_verdict_promising_names_its_numbers() -> None:
    steps = [(0.2, 0.6, True)] * 2 + [(0.9, 0.9, False)] * 8
    headline, reasons = diag(steps).verdict()
    assert headline == "PROMISING"
    text = " ".join(reasons)
    assert "20% of steps" in text and "6.0 of their top-10" in text and "100%" in text
    assert "blendin-local eval" in text


def test_verdict_excessive_interventions_and_low_overlap() -> None:
    steps = [(0.2, 0.1, True)] * 7 + [(0.9, 0.9, False)] * 3
    headline, reasons = diag(steps).verdict()
    assert headline == "UNLIKELY TO HELP"
    assert "70% of steps" in reasons[0] and "excessive interventions" in reasons[0]
    assert "only 1.0 of their top-10" in reasons[1]


def test_verdict_one_bad_signal_is_mixed() -> None:
    steps = [(0.2, 0.7, True)] * 7 + [(0.9, 0.9, False)] * 3
    headline, reasons = diag(steps).verdict()
    assert headline == "MIXED" and "excessive" in reasons[0]
    poor = diag([(0.2, 0.7, False)] + [(0.9, 0.9, False)] * 9,
                coverage={"exact": 40.0, "approximate": 50.0, "dropped": 10.0, "end→EOS": 0.0})
    headline, reasons = poor.verdict()
    assert headline == "MIXED" and "only 40%" in reasons[0]


def test_verdict_little_effect_and_no_data() -> None:
    headline, reasons = diag([(0.95, None, False)] * 100).verdict()
    assert headline == "LITTLE EFFECT" and "0.0% of steps" in reasons[0]
    assert diag([]).verdict()[0] == "NO DATA"


def test_diagnose_blends_every_step_and_measures_b(tmp_path: Path) -> None:
    d = diagnose(capital_pair(), ["What is the capital of Australia?"], max_tokens=30)
    assert d.steps and all(s.overlap10 is not None for s in d.steps)  # every step blended
    assert d.at(0.4)["interventions"] == 1  # only the "C" of Canberra is uncertain
    assert d.at(0.95)["rate"] == 1.0
    assert d.coverage["exact"] > 90
    figure(d, tmp_path / "d.png", [0.2, 0.4, 0.6], "fake")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(opts: dict[str, Any], methods: list[str]) -> ModelPair:
        assert methods == ["blendin"]
        return capital_pair()

    monkeypatch.setattr(commands, "pair_from_options", load)


def test_diagnose_command_prints_table_verdict_and_figure(tmp_path: Path, fake_models: None) -> None:
    fig = tmp_path / "out" / "diag.png"
    result = CliRunner().invoke(commands.diagnose_command,
                                ["--limit", "2", "--max-tokens", "20", "--figure", str(fig)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "vocabulary:" in out and "interv. rate" in out and "verdict: " in out
    assert "0.4" in out and "←" in out  # the verdict's γ is marked in the table
    assert fig.read_bytes()[:4] == b"\x89PNG"


def test_diagnose_command_json_with_data(tmp_path: Path, fake_models: None) -> None:
    result = CliRunner().invoke(
        commands.diagnose_command,
        ["--data", str(FIX / "arc.jsonl"), "--task", "arc", "--limit", "2", "--max-tokens", "8",
         "--figure", str(tmp_path / "d.png"), "--json", "--gammas", "0.2,0.5"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prompts"] == 2 and data["steps"] > 0
    assert [g["gamma"] for g in data["by_gamma"]] == [0.2, 0.4, 0.5]
    assert data["verdict"] in ("PROMISING", "MIXED", "UNLIKELY TO HELP", "LITTLE EFFECT")
    assert "arc.jsonl:3" in result.stderr  # the bad ARC row is reported, not silently dropped


def test_diagnose_needs_data_and_task_together(fake_models: None) -> None:
    with pytest.raises(UsageError, match="--data and --task go together"):
        CliRunner().invoke(commands.diagnose_command, ["--task", "arc"], catch_exceptions=False)
