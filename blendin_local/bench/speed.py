"""``blendin-local bench``: speed and memory against the physical limits of spec §8, as ratios
measured in one run (absolute timings on shared machines are noisy)."""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import blend
from ..generation.generate import generate
from ..generation.sampling import SamplingSettings, make_sampler
from ..pair import ModelPair
from ..prompts import Conversation
from ..settings import GenerationSettings

PROMPTS = (
    "The history of the Roman Empire begins",
    "Photosynthesis is the process by which",
    "Here is a short story about a lighthouse keeper:",
)


@dataclass
class Run:
    name: str
    tokens: int = 0
    seconds: float = 0.0  # decode time: prompt processing excluded
    interventions: int = 0
    generated: int = 0  # tokens produced (``tokens`` counts the timed evaluations)

    @property
    def rate(self) -> float:
        return self.interventions / self.generated if self.generated else 0.0

    @property
    def per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def numpy_step_us(n_base: int, n_guide: int, repeats: int = 200) -> dict[str, float]:
    """Median µs of one intervention step's NumPy work at these vocabulary sizes (synthetic)."""
    rng = np.random.default_rng(0)
    lb = (rng.standard_normal(n_base) * 3).astype(np.float32)
    lg = (rng.standard_normal(n_guide) * 3).astype(np.float32)
    target = rng.integers(0, n_base, n_guide)
    kept_ids = np.arange(n_guide)
    sample = make_sampler(SamplingSettings())
    core, diag = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p_base = blend.softmax(lb)
        b = float(p_base.max())
        p_guide = blend.softmax(lg)
        q, _ = blend.project(p_guide, kept_ids, target, n_base)
        alpha = blend.auto_alpha(b, float(p_guide.max()), float(p_base[int(np.argmax(q))]))
        sample(blend.blend(p_base, q, alpha), rng)
        t1 = time.perf_counter()
        blend.overlap_at_k(p_base, q, 100)
        t2 = time.perf_counter()
        core.append(t1 - t0)
        diag.append(t2 - t1)
    return {"step_us": 1e6 * statistics.median(core), "overlap_us": 1e6 * statistics.median(diag)}


def _measure(pair: ModelPair, prompt: str, method: str, gamma: float, max_tokens: int,
             run: Run) -> None:
    conv = Conversation.single(prompt, chat=False)
    r = generate(pair, conv, GenerationSettings(method=method, gamma=gamma,
                                                max_tokens=max_tokens)).run()
    # Decode time covers tokens - 1 evaluations (the last token is never evaluated), as in the
    # reference measurement from its first streamed token to its last.
    run.tokens += max(0, r.tokens - 1)
    run.generated += r.tokens
    run.seconds += r.seconds - r.prefill_s
    run.interventions += r.interventions


def _measure_reference(pair: ModelPair, prompt: str, max_tokens: int, run: Run) -> None:
    """llama-cpp-python's own greedy loop; its first streamed token stands in for our prefill."""
    base = pair.base
    assert base is not None
    ids, seconds = base.reference_completion(prompt.encode(), max_tokens)  # type: ignore[attr-defined]
    run.tokens += len(ids)
    run.generated += len(ids) + 1
    run.seconds += seconds


def run_bench(pair: ModelPair, *, max_tokens: int, rounds: int) -> dict[str, Any]:
    """Every run on every prompt in turn, ``rounds`` times, so that the machine's drift hits all
    runs alike; the runs' times are summed."""
    runs = {k: Run(k) for k in ("llama-cpp-python", "base", "blendin", "always", "guide")}
    for _ in range(rounds):
        for prompt in PROMPTS:
            _measure_reference(pair, prompt, max_tokens, runs["llama-cpp-python"])
            _measure(pair, prompt, "base", 0.0, max_tokens, runs["base"])
            _measure(pair, prompt, "blendin", 0.4, max_tokens, runs["blendin"])
            _measure(pair, prompt, "blendin", 2.0, max_tokens, runs["always"])
            _measure(pair, prompt, "guide", 0.0, max_tokens, runs["guide"])
    t_b, t_g = runs["base"].per_token, runs["guide"].per_token
    bl, al = runs["blendin"], runs["always"]
    predicted = bl.tokens * t_b + bl.rate * bl.tokens * t_g
    assert pair.base is not None and pair.guide is not None
    np_cost = numpy_step_us(pair.base.n_vocab, pair.guide.n_vocab)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    ratios = [
        ("blendin(γ=0.4) wall / predicted", bl.seconds / predicted, "<=", 1.10),
        ("always-intervene wall / (base + guide)",
         al.seconds / (al.tokens * (t_b + t_g)), "<=", 1.05),
        ("our base / llama-cpp-python tok/s",
         runs["base"].tokens_per_s / runs["llama-cpp-python"].tokens_per_s, ">=", 0.95),
        (f"NumPy step at |V|={pair.base.n_vocab} (ms)", np_cost["step_us"] / 1000, "<=", 1.0),
        ("peak RSS (GB)", rss_gb, "<=", 1.5),
    ]
    return {
        "runs": {k: {"tokens": r.tokens, "seconds": round(r.seconds, 3),
                     "tokens_per_s": round(r.tokens_per_s, 2), "interventions": r.interventions,
                     "intervention_rate": round(r.rate, 3)}
                 for k, r in runs.items()},
        "ratios": [{"metric": m, "value": round(v, 4), "target": f"{op} {t}",
                    "ok": bool(v <= t if op == "<=" else v >= t)} for m, v, op, t in ratios],
        "overlap_diagnostics_us": round(np_cost["overlap_us"], 1),
        "max_tokens": max_tokens, "rounds": rounds, "prompts": len(PROMPTS),
    }


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"decode speed ({report['prompts']} prompts × {report['rounds']} rounds, "
                    f"≤{report['max_tokens']} tokens each; prompt processing excluded)")
    for col in ("run", "tokens", "seconds", "tok/s", "interventions", "rate"):
        t.add_column(col, justify="right" if col != "run" else "left")
    for name, r in report["runs"].items():
        t.add_row(name, str(r["tokens"]), f"{r['seconds']:.2f}", f"{r['tokens_per_s']:.1f}",
                  str(r["interventions"]), f"{100 * r['intervention_rate']:.0f}%")
    console.print(t)
    t2 = Table(title="targets")
    for col in ("metric", "value", "target", ""):
        t2.add_column(col)
    for row in report["ratios"]:
        t2.add_row(row["metric"], f"{row['value']:.3f}", row["target"],
                   "[green]ok[/]" if row["ok"] else "[red]missed[/]")
    console.print(t2)
    console.print(f"overlap@100 diagnostics at an intervention: "
                  f"{report['overlap_diagnostics_us']:.0f} µs (outside the step budget)")
