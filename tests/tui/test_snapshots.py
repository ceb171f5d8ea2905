"""Layout snapshots (pytest-textual-snapshot) on the fake pair, at a fixed size.

Timing numbers are masked. After an intended change of layout, review and accept with
``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Label

from tui.app import ChatApp
from tui.widgets.messages import AssistantMessage

from driving import ask
from fakes.chat import chat_pair

SIZE = (120, 36)
QUESTION = "What is the capital of France?"


def make_app(tmp_path: Path, **kwargs: object) -> ChatApp:
    return ChatApp(pair=chat_pair(), export_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


async def answered(pilot) -> None:
    await ask(pilot, QUESTION)
    mask_timings(pilot.app)


def mask_timings(app: ChatApp) -> None:
    app.chat_screen.query_one("#speed", Label).update("tokens/s (masked)")


def test_reply_in_token_view_with_a_token_selected(snap_compare, tmp_path: Path) -> None:
    async def run_before(pilot) -> None:
        await answered(pilot)
        await pilot.press("ctrl+t")
        view = pilot.app.chat_screen.query(AssistantMessage).last().tokens
        view.select(5)  # " Paris": the guide changed it
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_reply_as_markdown_light_theme(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, light=True), terminal_size=SIZE, run_before=answered)


def test_settings_screen(snap_compare, tmp_path: Path) -> None:
    async def run_before(pilot) -> None:
        await answered(pilot)
        await pilot.press("ctrl+s")

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)
