"""Will this guide help this base? Measured signals before a full evaluation.

Each sample prompt is answered once with every step blended (method blendin, γ=2, auto α): every
step then reports the base's confidence b, the guide's, the top-10/100 overlap of the two and
whether the guide changed the token. The intervention rate at a γ is the share of those steps with
b < γ — measured along that always-blend trajectory, which is close to, but not the same text as,
what a run at that γ would write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..generation.generate import generate
from ..generation.steps import LOW_OVERLAP, Provenance
from ..pair import ModelPair
from ..prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from ..settings import GenerationSettings

SAMPLE_PROMPTS: tuple[str, ...] = (
    "A farmer has 12 cows and buys 5 more. Then 3 cows are sold. How many cows does he have now?",
    "What is the capital of Australia?",
    "Explain why the sky is blue in two sentences.",
    "Write a short, polite email declining a meeting invitation.",
    "Name three fruits that are yellow.",
    "How do I kill a Python process that is not responding?",
)
GAMMAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
ALWAYS = 2.0  # a γ above 1: every step intervenes
EXCESSIVE_RATE = 0.5  # the base unsure at more than half the steps: the guide would steer most
RARE_RATE = 0.02
POOR_COVERAGE = 80.0  # % of the guide vocabulary that maps exactly onto a base token


@dataclass
class StepSample:
    b: float
    overlap10: float | None
    overlap100: float | None
    changed: bool


@dataclass
class Diagnosis:
    """Per-step samples and the pair's vocabulary coverage; every figure derives from them."""

    coverage: dict[str, float]
    identity: bool
    prompts: int
    steps: list[StepSample] = field(default_factory=list)
    gamma: float = 0.4
    from_top_k: bool = False  # a model on a server: the figures come from top-k strings

    def approximations(self) -> list[str]:
        """Which figures are approximations, and of what (empty with two local models)."""
        if not self.from_top_k:
            return []
        return ["overlap@10/@100 are overlaps of the two models' top-k *string* sets (tokens "
                "with one string count once)",
                "guide changed compares the chosen string with the base's top string",
                "vocabulary coverage is unknown (a server gives strings, not its vocabulary)"]

    def at(self, gamma: float) -> dict[str, float | int | None]:
        """Intervention rate at ``gamma`` and what happens at those intervention points."""
        hits = [s for s in self.steps if s.b < gamma]
        o10 = [s.overlap10 for s in hits if s.overlap10 is not None]
        o100 = [s.overlap100 for s in hits if s.overlap100 is not None]
        return {
            "gamma": gamma,
            "interventions": len(hits),
            "rate": len(hits) / len(self.steps) if self.steps else 0.0,
            "overlap10": sum(o10) / len(o10) if o10 else None,
            "overlap100": sum(o100) / len(o100) if o100 else None,
            "guide_changed": sum(s.changed for s in hits) / len(hits) if hits else None,
        }

    def confidence_quantiles(self) -> dict[str, float]:
        import numpy as np

        if not self.steps:
            return {}
        b = np.array([s.b for s in self.steps])
        return {f"p{q}": float(np.percentile(b, q)) for q in (10, 25, 50, 75, 90)}

    @property
    def exact_coverage(self) -> float:
        return self.coverage.get("exact", 0.0) + self.coverage.get("end→EOS", 0.0)

    def verdict(self) -> tuple[str, list[str]]:
        """A headline and the reasons, each naming the number it rests on (paper §5: excessive
        interventions and low top-k overlap signal an unreliable guide)."""
        if not self.steps:
            return "NO DATA", ["no tokens were generated; nothing to judge"]
        at = self.at(self.gamma)
        rate, o10, changed = float(at["rate"] or 0.0), at["overlap10"], at["guide_changed"]
        g = f"γ={self.gamma:g}"
        good: list[str] = []
        bad: list[str] = []
        if self.identity:
            good.append("the two models share a tokenizer (no projection loss)")
        elif not self.coverage:
            pass  # a model on a server: no vocabulary to compare
        elif self.exact_coverage < POOR_COVERAGE:
            bad.append(f"only {self.exact_coverage:.0f}% of the guide's vocabulary maps exactly "
                       "onto base tokens, so part of its advice is approximated or lost")
        else:
            good.append(f"{self.exact_coverage:.0f}% of the guide's vocabulary maps exactly onto "
                        "base tokens")
        if rate > EXCESSIVE_RATE:
            bad.append(f"the base is unsure (top-1 < {self.gamma:g}) at {100 * rate:.0f}% of "
                       "steps: the guide would be steering most of the answer "
                       "(excessive interventions)")
        elif rate < RARE_RATE:
            return "LITTLE EFFECT", [
                f"the base is unsure at only {100 * rate:.1f}% of steps at {g}: the guide would "
                "almost never be asked; raise γ to give it a say"
            ]
        else:
            good.append(f"the guide would step in at {100 * rate:.0f}% of steps at {g}")
        if o10 is not None:
            if o10 < LOW_OVERLAP:
                bad.append(f"where it steps in, the two models share only {10 * o10:.1f} of their "
                           "top-10 tokens (low overlap: the guide's advice is far from what the "
                           "base considers)")
            else:
                good.append(f"where it steps in, they share {10 * o10:.1f} of their top-10 tokens")
        if changed is not None:
            good.append(f"the guide changes the base's choice at {100 * changed:.0f}% of those "
                        "steps")
        if not bad:
            return "PROMISING", good + ["confirm with `blendin-local eval` on your task"]
        if len(bad) == 1:
            return "MIXED", bad + good
        return "UNLIKELY TO HELP", bad + good

    def to_dict(self, gammas: Sequence[float] = GAMMAS) -> dict[str, Any]:
        headline, reasons = self.verdict()
        return {
            "coverage": self.coverage,
            "identity": self.identity,
            "prompts": self.prompts,
            "steps": len(self.steps),
            "base_confidence": self.confidence_quantiles(),
            "by_gamma": [self.at(g) for g in gammas],
            "gamma": self.gamma,
            "verdict": headline,
            "reasons": reasons,
            "approximations": self.approximations(),
        }


def diagnose(
    pair: ModelPair,
    prompts: Sequence[str],
    *,
    max_tokens: int = 64,
    gamma: float = 0.4,
    system: str = REFERENCE_SYSTEM,
    on_prompt: Any = None,
) -> Diagnosis:
    """Answer each prompt with every step blended and collect the per-step signals."""
    remote = not all(e.capabilities.dense_logits for e in (pair.base, pair.guide) if e is not None)
    if pair.projection is None and not remote:
        raise ValueError("diagnose needs a pair with a base, a guide and their projection")
    result = Diagnosis(coverage=pair.projection.coverage() if pair.projection else {},
                       identity=pair.projection.identity if pair.projection else False,
                       prompts=len(prompts), gamma=gamma, from_top_k=remote)
    # a model on a server gives top-k strings only: the paper's string blend (spec §3)
    settings = GenerationSettings(method="blendin", gamma=ALWAYS, alpha=None, max_tokens=max_tokens,
                                  support="top100" if remote else "full")
    for i, prompt in enumerate(prompts):
        conv = Conversation.single(prompt, system=system, plain=QA_FORMAT)
        for step in generate(pair, conv, settings):
            if step.b is None:
                continue
            result.steps.append(StepSample(step.b, step.overlap10, step.overlap100,
                                           step.provenance is Provenance.BLEND_GUIDE))
        if on_prompt is not None:
            on_prompt(i + 1)
    return result


def figure(d: Diagnosis, path: Path, gammas: Sequence[float], title: str) -> None:
    """Three panels: base confidence, intervention rate vs γ, overlap at intervention points."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), dpi=100)
    b = [s.b for s in d.steps]
    ax = axes[0]
    ax.hist(b, bins=[i / 20 for i in range(21)], color="#1f77b4", alpha=0.8)
    ax.axvline(d.gamma, color="#d62728", linestyle="--", label=f"γ={d.gamma:g}")
    ax.set_xlabel("base top-1 probability b")
    ax.set_ylabel("steps")
    ax.set_title("base confidence")
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = [d.at(g) for g in gammas]
    ax.plot(gammas, [100 * float(r["rate"] or 0) for r in rows], marker="o",
            label="intervention rate")
    ax.plot(gammas, [100 * float(r["guide_changed"] or 0) for r in rows], marker="s",
            label="guide changed the token\n(% of interventions)")
    ax.axhline(100 * EXCESSIVE_RATE, color="#d62728", linestyle=":", linewidth=1,
               label=f"excessive (> {100 * EXCESSIVE_RATE:.0f}%)")
    ax.set_xlabel("γ")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)
    ax.set_title("interventions by γ (always-blend trajectory)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    hits = [s for s in d.steps if s.b < d.gamma]
    o10 = [s.overlap10 for s in hits if s.overlap10 is not None]
    o100 = [s.overlap100 for s in hits if s.overlap100 is not None]
    bins = [i / 10 for i in range(11)]
    ax.axvline(LOW_OVERLAP, color="#d62728", linestyle=":", linewidth=1,
               label=f"low overlap (< {LOW_OVERLAP:g})")
    if o10:
        ax.hist([o10, o100], bins=bins, label=["overlap@10", "overlap@100"],
                color=["#1f77b4", "#ff7f0e"])
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no interventions", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"top-k overlap at intervention points (b < {d.gamma:g})")
    ax.set_ylabel("steps")
    ax.set_title("base–guide agreement")
    headline, _ = d.verdict()
    fig.suptitle(f"{title} — {headline}", fontsize=11)
    save_figure(fig, path, "--figure")
