"""The saved chats, most recent first; Enter re-opens one."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from ..store import ChatEntry


def entry_prompt(entry: ChatEntry) -> Text:
    if entry.error is not None:
        return Text.assemble((entry.path.name, "bold"), "  ", (entry.error, "dim italic"))
    when = entry.updated.replace("T", " ")[:16]
    return Text.assemble(
        (entry.title or "(empty)", "bold"), "\n", (f"{when} · {entry.turns} messages", "dim")
    )


class ChatsScreen(ModalScreen[Path | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Close")]

    def __init__(self, entries: list[ChatEntry], directory: Path) -> None:
        super().__init__()
        self.entries = entries
        self.directory = directory

    def compose(self) -> ComposeResult:
        with Vertical(id="chats-dialog"):
            yield Label(f"Chats in {self.directory}", classes="dialog-title")
            options = [Option(entry_prompt(e), id=str(i)) for i, e in enumerate(self.entries)]
            yield OptionList(*options, id="chats")
            if not self.entries:
                yield Label("No saved chats yet.", classes="dim")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.dismiss(self.entries[int(event.option.id)].path)

    def action_cancel(self) -> None:
        self.dismiss(None)
