"""A reply as its tokens, each coloured by who chose it; one token can be selected."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.events import Click, Focus
from textual.message import Message
from textual.reactive import reactive
from textual.style import Style
from textual.widget import Widget

from blendin_local.generation.steps import Provenance, Step

PROVENANCE_CLASSES = {p: f"prov--{p.value}" for p in Provenance}
LABELS = {
    Provenance.BASE: "base",
    Provenance.BLEND_AGREE: "blend: guide agreed",
    Provenance.BLEND_GUIDE: "blend: guide changed",
    Provenance.GUIDE: "guide alone",
}
# A step whose text is empty (held back for a stop string, or an end token) still gets a mark.
EMPTY_MARK = "·"


def shown(text: str) -> str:
    """How a token's text appears inside the token view."""
    return text if text else EMPTY_MARK


class TokenView(Widget, can_focus=True):
    """Coloured tokens of one reply. ←/→ (or a click) select a token and post :class:`Selected`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {*PROVENANCE_CLASSES.values(), "prov--empty", "token--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Previous token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
    ]

    cursor: reactive[int | None] = reactive(None)

    class Selected(Message):
        """A token was selected (``view.steps[index]``)."""

        def __init__(self, view: TokenView, index: int) -> None:
            super().__init__()
            self.view = view
            self.index = index

        @property
        def step(self) -> Step:
            return self.view.steps[self.index]

    def __init__(self, steps: list[Step] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.steps: list[Step] = list(steps or ())

    def add_step(self, step: Step) -> None:
        self.steps.append(step)
        self.refresh(layout=True)

    def set_steps(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.cursor = None
        self.refresh(layout=True)

    def render(self) -> Content:
        if not self.steps:
            return Content.styled("…", self.get_visual_style("prov--empty", partial=False))
        styles = {p: self.get_visual_style(c, partial=False) for p, c in PROVENANCE_CLASSES.items()}
        empty = self.get_visual_style("prov--empty", partial=False)
        cursor = self.get_visual_style("token--cursor", partial=False)
        parts: list[tuple[str, Style]] = []
        for i, step in enumerate(self.steps):
            style = styles[step.provenance] + (empty if not step.text else Style())
            text = shown(step.text)
            if i == self.cursor:
                style += cursor
                if text.startswith("\n"):  # an invisible newline gets a visible cursor
                    text = "⏎" + text
            parts.append((text, style + Style.from_meta({"token": i})))
        return Content.assemble(*parts)

    def watch_cursor(self, cursor: int | None) -> None:
        self.refresh()
        if cursor is not None:
            self.post_message(self.Selected(self, cursor))

    def select(self, index: int) -> None:
        if not self.steps:
            return
        self.cursor = max(0, min(index, len(self.steps) - 1))

    def action_move(self, delta: int) -> None:
        if self.cursor is None:
            self.select(len(self.steps) - 1 if delta < 0 else 0)
        else:
            self.select(self.cursor + delta)

    def action_jump(self, index: int) -> None:
        self.select(index if index >= 0 else len(self.steps) - 1)

    def on_click(self, event: Click) -> None:
        index = event.style.meta.get("token")
        if isinstance(index, int):
            event.stop()
            self.focus()
            self.select(index)

    def on_focus(self, event: Focus) -> None:
        if self.cursor is None:  # start on the last token that shows any text
            shown_steps = [i for i, s in enumerate(self.steps) if s.text]
            self.select(shown_steps[-1] if shown_steps else len(self.steps) - 1)
        elif self.steps:
            self.post_message(self.Selected(self, self.cursor))


class Legend(Widget):
    """What each token colour means (same component styles as :class:`TokenView`)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = set(PROVENANCE_CLASSES.values())

    def render(self) -> Content:
        parts: list[str | tuple[str, Style]] = []
        for i, (p, c) in enumerate(PROVENANCE_CLASSES.items()):
            label = f" {LABELS[p]} "
            parts.append((label, self.get_visual_style(c, partial=False)))
            parts.append(" " * (23 - len(label)) if i % 2 == 0 else "\n")
        return Content.assemble(*parts[:-1])
