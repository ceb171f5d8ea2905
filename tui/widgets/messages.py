"""The transcript's messages: a user's, and a reply that streams as tokens then shows Markdown."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Markdown, Static

from blendin_local.generation.steps import Step

from ..chat import Turn, describe
from .tokens import TokenView


class UserMessage(Static):
    """What the user sent (shown as typed, not as Markdown)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)
        self.border_title = "you"


class AssistantMessage(Vertical):
    """A reply. While it streams, or in token view (class ``-tokens``), it shows coloured tokens;
    once finished it shows Markdown."""

    def __init__(self, turn: Turn, *, streaming: bool = False) -> None:
        super().__init__(classes="-streaming" if streaming else "")
        self.turn = turn
        self.border_title = "assistant"

    def compose(self) -> ComposeResult:
        yield TokenView(self.turn.steps)
        yield Markdown(self.turn.content if not self.has_class("-streaming") else "")
        yield Label(self._footer(), classes="reply-footer", markup=False)

    @property
    def tokens(self) -> TokenView:
        return self.query_one(TokenView)

    def on_mount(self) -> None:
        self.border_title = self._title()

    def _title(self) -> str:
        method = (self.turn.settings or {}).get("method")
        return f"assistant · {method}" if method else "assistant"

    def _footer(self) -> str:
        if self.has_class("-streaming"):
            return "generating… (esc stops)"
        return describe(self.turn.summary) if self.turn.summary else ""

    def add_step(self, step: Step) -> None:
        self.tokens.add_step(step)

    async def finish(self) -> None:
        """Show the final text as Markdown and the reply's one-line summary."""
        self.remove_class("-streaming")
        self.tokens.set_steps(self.turn.steps)
        await self.query_one(Markdown).update(self.turn.content)
        self.query_one(".reply-footer", Label).update(self._footer())
