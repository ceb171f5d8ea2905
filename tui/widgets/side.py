"""The side panel: the reply's live numbers, sparklines, legend and the selected token's record."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, Sparkline, Static

from blendin_local.generation.steps import Candidate, Step

from .tokens import LABELS, Legend


def num(value: float | None, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quoted(text: str) -> str:
    """A token's text in quotes, with whitespace and control characters made visible."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "'" + "".join(out) + "'"


def _grid(*widths: int) -> Table:
    grid = Table.grid(padding=(0, 1))
    for i, width in enumerate(widths):
        grid.add_column(style="bold" if i % 2 == 0 else "", no_wrap=True, min_width=width)
    return grid


def settings_text(settings: dict[str, Any]) -> Text:
    """``blendin · γ 0.40 · α auto · full · greedy``"""
    alpha = settings.get("alpha", "auto")
    temp = settings.get("temperature") or 0.0
    sampling = "greedy" if temp == 0 else f"T {temp:g} top-p {settings.get('top_p', 1.0):g}"
    parts = [
        str(settings.get("method", "–")),
        f"γ {num(settings.get('gamma'))}",
        "α auto" if alpha == "auto" else f"α {num(alpha)}",
        str(settings.get("support", "–")),
        sampling,
    ]
    return Text(" · ".join(parts))


def summary_table(summary: dict[str, Any] | None) -> Table:
    s = summary or {}
    grid = _grid(9, 6, 8, 5)
    grid.add_row("tokens", str(s.get("tokens", "–")), "stop", str(s.get("stop_reason") or "–"))
    grid.add_row(
        "intervene", pct(s.get("intervention_rate")), "changed", pct(s.get("guide_changed_rate"))
    )
    grid.add_row("mean α", num(s.get("mean_alpha")), "overlap", num(s.get("mean_overlap10")))
    return grid


def confidence(step: Step) -> float:
    """The base's top-1 probability (the guide's when the guide wrote alone)."""
    if step.b is not None:
        return step.b
    return step.g or 0.0


class StatsPanel(VerticalScroll):
    """Numbers for one reply: live while it streams, or the selected reply's afterwards."""

    def compose(self) -> ComposeResult:
        yield Label("Reply", classes="section")
        yield Static(id="settings")
        yield Static(id="summary")
        yield Label("tokens/s –", id="speed")
        with Horizontal(classes="spark-row"):
            yield Label("b", classes="spark-label")
            yield Sparkline([], id="spark-b")
        with Horizontal(classes="spark-row"):
            yield Label("α", classes="spark-label")
            yield Sparkline([], id="spark-alpha")
        yield Legend()
        yield Label("Selected token", classes="section")
        yield StepDetail(id="step")

    def show(
        self, settings: dict[str, Any], summary: dict[str, Any] | None, steps: list[Step]
    ) -> None:
        self.query_one("#settings", Static).update(settings_text(settings))
        self.query_one("#summary", Static).update(summary_table(summary))
        speed = (summary or {}).get("tokens_per_s")
        self.query_one("#speed", Label).update(f"tokens/s {num(speed, '.1f')}")
        self.query_one("#spark-b", Sparkline).data = [confidence(s) for s in steps]
        self.query_one("#spark-alpha", Sparkline).data = [s.alpha or 0.0 for s in steps]

    def show_step(self, step: Step | None) -> None:
        self.query_one(StepDetail).show(step)


def _top_table(title: str, top: tuple[Candidate, ...], chosen: int) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column(justify="right", no_wrap=True)
    table.add_row(Text(title, style="bold"), "")
    if not top:
        table.add_row(Text("(not run)", style="dim"), "")
    for c in top:
        style = "bold reverse" if c.token == chosen else ""
        table.add_row(Text(quoted(c.text), style=style), Text(f"{c.prob:.3f}"))
    return table


class StepDetail(Static):
    """The step record of the selected token."""

    step: Step | None = None

    def on_mount(self) -> None:
        self.show(None)

    def show(self, step: Step | None) -> None:
        self.step = step
        if step is None:
            self.update(Text("ctrl+t shows a reply's tokens;\nclick one or use ←/→", style="dim"))
            return
        text = step.text or step.piece.decode("utf-8", errors="replace")
        head = _grid(8, 10)
        head.add_row("token", f"#{step.index} {quoted(text)} (id {step.token})")
        head.add_row("chosen", LABELS[step.provenance])
        head.add_row("b · g · α", f"{num(step.b, '.3f')} · {num(step.g, '.3f')} · {num(step.alpha, '.3f')}")
        head.add_row(
            "p(token)", f"base {num(step.p_base_token, '.3f')} · guide {num(step.p_guide_token, '.3f')}"
        )
        head.add_row("overlap", f"@10 {num(step.overlap10)} · @100 {num(step.overlap100)}")
        tops = Table.grid(padding=(0, 2))
        tops.add_row(
            _top_table("base top-5", step.base_top, step.token),
            _top_table("guide top-5", step.guide_top, step.token),
        )
        self.update(Group(head, Text(""), tops))
