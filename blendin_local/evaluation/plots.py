"""PNG figures of an evaluation (matplotlib, Agg backend, imported only when plotting)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fileio import replace_atomically
from ..methods import METHODS
from .summary import SummaryRow


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(method: str) -> str:
    spec = METHODS.get(method)
    return spec.colour if spec is not None else "#333333"


def _yerr(rows: Sequence[SummaryRow]) -> list[list[float]]:
    # Clamped: matplotlib refuses a negative error bar (records summarised elsewhere may have one).
    return [[100 * max(0.0, r.accuracy - r.ci_low) for r in rows],
            [100 * max(0.0, r.ci_high - r.accuracy) for r in rows]]


def accuracy_vs_gamma(rows: Sequence[SummaryRow], path: Path, title: str) -> None:
    """Methods with a γ as lines (with 95% intervals); the others as horizontal references."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    curves: dict[tuple[str, str], list[SummaryRow]] = {}
    for r in rows:
        if r.gamma is not None:
            curves.setdefault((r.method, r.alpha), []).append(r)
    for (method, alpha), pts in curves.items():
        pts = sorted(pts, key=lambda r: r.gamma or 0.0)
        label = method if alpha == "-" else f"{method} α={alpha}"
        ax.errorbar([r.gamma for r in pts], [100 * r.accuracy for r in pts], yerr=_yerr(pts),
                    marker="o", capsize=3, color=_colour(method), label=label,
                    linestyle="-" if alpha in ("auto", "-") else "--")
    for r in rows:
        if r.gamma is None:
            ax.axhline(100 * r.accuracy, color=_colour(r.method), linestyle=":", linewidth=1.6,
                       label=f"{r.method} ({100 * r.accuracy:.0f}%)")
    gammas = sorted({r.gamma for r in rows if r.gamma is not None})
    if gammas:
        pad = max(0.05, 0.1 * (gammas[-1] - gammas[0]))
        ax.set_xlim(gammas[0] - pad, gammas[-1] + pad)
    ax.set_xlabel("γ (the guide speaks when the base's top-1 probability < γ)")
    ax.set_ylabel("accuracy (%)  ·  bars: 95% Wilson interval")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def accuracy_vs_rate(rows: Sequence[SummaryRow], path: Path, title: str) -> None:
    """Each setting that used the guide as a point: intervention rate against accuracy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    pts = [r for r in rows if r.intervention_rate is not None]
    for r in pts:
        ax.errorbar([100 * (r.intervention_rate or 0.0)], [100 * r.accuracy], yerr=_yerr([r]),
                    marker="o", capsize=3, color=_colour(r.method))
        ax.annotate(r.label, (100 * (r.intervention_rate or 0.0), 100 * r.accuracy),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    for r in rows:
        if r.intervention_rate is None:
            ax.axhline(100 * r.accuracy, color=_colour(r.method), linestyle=":", linewidth=1.6,
                       label=f"{r.method} ({100 * r.accuracy:.0f}%)")
    if not pts:
        ax.text(0.5, 0.5, "no method used the guide", ha="center", transform=ax.transAxes)
    ax.set_xlabel("intervention rate (% of tokens where the guide was blended in)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    top = max((100 * (r.intervention_rate or 0.0) for r in pts), default=0.0)
    ax.set_xlim(0, max(5.0, 1.4 * top))  # room for the labels right of the points
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(r.intervention_rate is None for r in rows):
        ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def alpha_histogram(
    rows: Sequence[SummaryRow], alphas: dict[str, list[float]], path: Path, title: str
) -> None:
    """Distribution of α over every intervention step, per setting."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    bins = [i / 20 for i in range(21)]
    shown = [r for r in rows if alphas.get(r.label)]
    for r in shown:
        ax.hist(alphas[r.label], bins=bins, histtype="step", linewidth=1.6,
                label=f"{r.label} (n={len(alphas[r.label])})",
                color=_colour(r.method) if len(shown) == 1 else None)
    if not shown:
        ax.text(0.5, 0.5, "no intervention steps", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("α (weight of the guide at an intervention step)")
    ax.set_ylabel("steps")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def overlap_correct_wrong(
    rows: Sequence[SummaryRow], overlaps: dict[str, tuple[list[float], list[float]]], path: Path,
    title: str,
) -> None:
    """Per-answer mean overlap@10 at intervention steps, correct answers beside wrong ones."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    shown = [r for r in rows if any(overlaps.get(r.label, ([], [])))]
    data, positions, colours, ticks, names = [], [], [], [], []
    for i, r in enumerate(shown):
        right, wrong = overlaps[r.label]
        for j, (values, colour) in enumerate(((right, "#2ca02c"), (wrong, "#d62728"))):
            data.append(values or [float("nan")])
            positions.append(3 * i + j)
            colours.append(colour)
        ticks.append(3 * i + 0.5)
        names.append(f"{r.label}\n{len(right)} right / {len(wrong)} wrong")
    if shown:
        box = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True,
                         showfliers=False)
        for patch, colour in zip(box["boxes"], colours, strict=True):
            patch.set_facecolor(colour)
            patch.set_alpha(0.35)
        for pos, values, colour in zip(positions, data, colours, strict=True):
            ax.scatter([pos] * len(values), values, s=12, color=colour, zorder=3)
        ax.set_xticks(ticks, names, fontsize=7)
        ax.scatter([], [], color="#2ca02c", label="correct")
        ax.scatter([], [], color="#d62728", label="wrong")
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no answer had interventions", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_ylabel("mean top-10 overlap at intervention steps")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def save_figure(fig: Any, path: Path, option: str = "--out") -> None:
    """Write ``fig`` beside ``path`` and rename it into place; an OSError is one line naming
    ``option``, and the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        replace_atomically(path, lambda p: fig.savefig(p, format=path.suffix[1:] or None), option)
    finally:
        plt.close(fig)



def eval_plots(
    rows: Sequence[SummaryRow], records: dict[str, list[dict[str, Any]]], out_dir: Path, task: str
) -> list[Path]:
    """Every evaluation figure into ``out_dir``; ``records`` maps a setting label to its records."""
    alphas = {label: [a for r in recs for a in (r.get("alphas") or [])]
              for label, recs in records.items()}
    overlaps = {}
    for label, recs in records.items():
        with_overlap = [r for r in recs if r.get("mean_overlap10") is not None]
        overlaps[label] = ([r["mean_overlap10"] for r in with_overlap if r.get("correct")],
                           [r["mean_overlap10"] for r in with_overlap if not r.get("correct")])
    n = max((r.n for r in rows), default=0)
    paths = {name: out_dir / f"{name}.png" for name in
             ("accuracy_vs_gamma", "accuracy_vs_rate", "alpha_hist", "overlap_correct_wrong")}
    accuracy_vs_gamma(rows, paths["accuracy_vs_gamma"], f"{task}: accuracy vs γ (n={n})")
    accuracy_vs_rate(rows, paths["accuracy_vs_rate"], f"{task}: accuracy vs intervention rate")
    alpha_histogram(rows, alphas, paths["alpha_hist"], f"{task}: α at intervention steps")
    overlap_correct_wrong(rows, overlaps, paths["overlap_correct_wrong"],
                          f"{task}: base–guide overlap, correct vs wrong")
    return list(paths.values())
