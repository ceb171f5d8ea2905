"""Driving the chat app in Pilot tests: send a message, wait for the reply, read a widget."""

from __future__ import annotations

import time


async def wait_until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.01)


def idle(app) -> bool:
    """No reply is being generated."""
    return app.chat_screen.job is None


async def send(pilot, text: str) -> None:
    """Put ``text`` in the message box and press Enter.

    (Typing key by key costs ~40 ms a key in Pilot; one test types for real.)
    """
    screen = pilot.app.chat_screen
    await wait_until(pilot, lambda: bool(screen.query("#prompt")), "the chat screen")
    prompt = screen.prompt
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")


async def ask(pilot, text: str, timeout: float = 10.0) -> None:
    """Send ``text`` and wait for the whole reply."""
    app = pilot.app
    before = len(app.chat_screen.chat.turns)
    await send(pilot, text)
    await wait_until(
        pilot, lambda: idle(app) and len(app.chat_screen.chat.turns) >= before + 2, "the reply",
        timeout,
    )
    await pilot.pause()


def plain(renderable: object) -> str:
    """What a widget's content reads as, without styles."""
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()
