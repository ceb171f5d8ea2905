"""Decoding settings and the system prompt, as a modal form; changes apply to the next reply."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, TextArea

from blendin_local.errors import UsageError
from blendin_local.methods import names as method_names
from blendin_local.settings import GenerationSettings, parse_alpha


@dataclass(frozen=True)
class ChatSettings:
    generation: GenerationSettings
    system: str


def _number(field: str, value: str, kind: type = float) -> float:
    try:
        return kind(value.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{field} must be {what}, got {value.strip()!r}") from None


def parse_form(
    base: GenerationSettings,
    *,
    method: str,
    gamma: str,
    alpha: str,
    support: str,
    temperature: str,
    top_p: str,
    max_tokens: str,
) -> GenerationSettings:
    """New settings from the form's strings; raises UsageError naming the bad field.

    ``dataclasses.replace`` runs the library's validation, so its messages reach the user as is.
    """
    sampling = replace(
        base.sampling,
        temperature=_number("temperature", temperature),
        top_p=_number("top-p", top_p),
    )
    return replace(
        base,
        method=method,
        gamma=_number("γ (gamma)", gamma),
        alpha=parse_alpha(alpha),
        support=support,
        max_tokens=int(_number("max tokens", max_tokens, int)),
        sampling=sampling,
    )


class SettingsScreen(ModalScreen[ChatSettings | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, current: ChatSettings) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        g = self.current.generation
        with Vertical(id="settings-dialog"):
            yield Label("Settings — apply to the next reply", classes="dialog-title")
            with Grid(id="settings-grid"):
                yield Label("method")
                yield Select([(m, m) for m in method_names()], value=g.method, allow_blank=False, id="method",
                             compact=True)
                yield Label("γ (gate)")
                yield Input(f"{g.gamma:g}", id="gamma", compact=True)
                yield Label("α")
                yield Input("auto" if g.alpha is None else f"{g.alpha:g}", id="alpha",
                            placeholder="auto or 0..1", compact=True)
                yield Label("support")
                yield Select([("full", "full"), ("top100", "top100")], value=g.support,
                             allow_blank=False, id="support", compact=True)
                yield Label("temperature")
                yield Input(f"{g.sampling.temperature:g}", id="temperature",
                            placeholder="0 = greedy", compact=True)
                yield Label("top-p")
                yield Input(f"{g.sampling.top_p:g}", id="top_p", compact=True)
                yield Label("max tokens")
                yield Input(str(g.max_tokens), id="max_tokens", compact=True)
            yield Label("system prompt", id="system-label")
            yield TextArea(self.current.system, id="system", soft_wrap=True)
            with Horizontal(id="settings-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value

    def action_save(self) -> None:
        try:
            generation = parse_form(
                self.current.generation,
                method=str(self.query_one("#method", Select).value),
                gamma=self._value("gamma"),
                alpha=self._value("alpha"),
                support=str(self.query_one("#support", Select).value),
                temperature=self._value("temperature"),
                top_p=self._value("top_p"),
                max_tokens=self._value("max_tokens"),
            )
        except UsageError as exc:
            self.notify(str(exc), title="Invalid setting", severity="error")
            return
        system = self.query_one("#system", TextArea).text.strip()
        self.dismiss(ChatSettings(generation, system))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()
