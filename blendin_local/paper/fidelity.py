"""How closely ``--compat paper`` reproduces the reference's recorded decisions (teacher-forced).

A recording (JSONL, written by ``scripts/reference_compare.py`` from the reference's own code) holds a
header, one ``answer`` record per question and one ``step`` record per step: the answer text before
the step (``y``), whether the reference intervened, ``b``, ``α`` and the string it appended. Here each
recorded step is decided again by :func:`.steps.paper_step` from the same ``y`` and compared:
same gate, α within :data:`ALPHA_TOLERANCE` where both intervened, same chosen string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engines.remote.engine import RemoteModel
from ..prompts import QA_FORMAT, Conversation
from ..settings import GenerationSettings
from .reference import PAPER_BASE_TOP_P, PAPER_SYSTEM, PaperDecision
from .steps import PaperSetup, ask, paper_step, servers_setup

ALPHA_TOLERANCE = 0.02
TARGET = 0.98  # share of steps that must agree


@dataclass(frozen=True)
class Recording:
    header: dict[str, Any]
    answers: list[dict[str, Any]]
    steps: list[dict[str, Any]]

    def steps_of(self, question: int) -> list[dict[str, Any]]:
        return [s for s in self.steps if s["q"] == question]


def load_recording(path: Path) -> Recording:
    header: dict[str, Any] = {}
    answers, steps = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        kind = rec.pop("kind")
        if kind == "header":
            header = rec
        elif kind == "answer":
            answers.append(rec)
        elif kind == "step":
            steps.append(rec)
    return Recording(header, answers, steps)


@dataclass(frozen=True)
class StepCheck:
    q: int
    i: int
    gate: bool
    alpha: bool
    chosen: bool
    tie: bool  # the reference's or our greedy maximum was shared (PYTHONHASHSEED decides there)
    ours: PaperDecision

    @property
    def agrees(self) -> bool:
        return self.gate and self.alpha and self.chosen


def check_step(rec: dict[str, Any], ours: PaperDecision) -> StepCheck:
    gate = rec["intervened"] == ours.intervened
    alpha = True
    if rec["intervened"] and ours.intervened:
        alpha = ours.alpha is not None and abs(ours.alpha - rec["alpha"]) <= ALPHA_TOLERANCE
    return StepCheck(q=rec["q"], i=rec["i"], gate=gate, alpha=alpha, chosen=rec["chosen"] == ours.chosen,
                     tie=bool(rec.get("tie")) or ours.tie, ours=ours)


@dataclass
class Report:
    checks: list[StepCheck] = field(default_factory=list)

    def share(self, what: Callable[[StepCheck], bool], among: Iterable[StepCheck] | None = None) -> float:
        pool = list(self.checks if among is None else among)
        return sum(map(what, pool)) / len(pool) if pool else 1.0

    def summary(self) -> dict[str, Any]:
        intervened = [c for c in self.checks if c.gate and c.ours.intervened]
        return {
            "steps": len(self.checks),
            "agree": round(self.share(lambda c: c.agrees), 4),
            "gate": round(self.share(lambda c: c.gate), 4),
            "alpha_within_0.02": round(self.share(lambda c: c.alpha, intervened), 4),
            "chosen": round(self.share(lambda c: c.chosen), 4),
            "interventions": len(intervened),
            "chosen_at_interventions": round(self.share(lambda c: c.chosen, intervened), 4),
            "ties": sum(c.tie for c in self.checks),
            "disagreements": [{"q": c.q, "i": c.i, "gate": c.gate, "alpha": c.alpha,
                               "chosen": c.chosen, "ours": c.ours.chosen, "tie": c.tie}
                              for c in self.checks if not c.agrees],
        }


def setup_for(recording: Recording, question: int, base: RemoteModel, guide: RemoteModel) -> PaperSetup:
    """Our paper set-up for a recorded question, with the recording's settings."""
    h = recording.header
    alpha = None if h["alpha"] == "auto" else float(h["alpha"])
    settings = GenerationSettings(method="blendin", gamma=h["gamma"], alpha=alpha, compat="paper",
                                  max_tokens=h["max_tokens"])
    conv = Conversation.single(recording.answers[question]["question"], system=h.get("system", PAPER_SYSTEM),
                               plain=QA_FORMAT, chat=True)
    return servers_setup(base, guide, conv, settings)


def prime(recording: Recording, q: int, base: RemoteModel, guide: RemoteModel) -> None:
    """Send each server the last prompt it got for question ``q`` in the recording. A
    llama-cpp-python server keeps its last prompt's KV cache and evaluates only what a new prompt
    adds, and batch shapes move logits (spec §3): this gives the next question the recorded state."""
    setup = setup_for(recording, q, base, guide)
    steps = recording.steps_of(q)
    crashed = recording.answers[q].get("crash") is not None  # its last, failed step is not recorded
    final = recording.answers[q]["answer"]
    ask(base, setup.base_prefix + (final if crashed else steps[-1]["y"]), top_p=PAPER_BASE_TOP_P)
    guided = [s["y"] for s in steps if s["intervened"]] + ([final] if crashed else [])
    if guided:
        ask(guide, setup.guide_prefix + guided[-1])


def replay(recording: Recording, base: RemoteModel, guide: RemoteModel,
           questions: Iterable[int] | None = None,
           decide: Callable[[PaperSetup, int, str], PaperDecision] | None = None) -> Iterator[StepCheck]:
    """Decide every recorded step of ``questions`` (all by default) again, in recorded order, from
    the recorded answer text; ``decide(setup, q, y)`` may serve decisions from a cache."""
    for q in range(len(recording.answers)) if questions is None else questions:
        setup = setup_for(recording, q, base, guide)
        if q > 0:
            prime(recording, q - 1, base, guide)
        for rec in recording.steps_of(q):
            ours = decide(setup, q, rec["y"]) if decide else paper_step(setup, rec["y"])[0]
            yield check_step(rec, ours)
