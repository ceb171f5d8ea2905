"""Make docs/chat.svg: the chat app answering on the real default pair, a token selected.

    .venv/bin/python tests/tui/screenshot.py [OUT.svg]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from textual.widgets import Label

from blendin_local.generation.steps import Provenance
from blendin_local.models import load_pair
from tui.app import ChatApp
from tui.widgets.messages import AssistantMessage

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the capital of France?"


async def main(out: Path) -> None:
    os.environ["BLENDIN_CHATS_DIR"] = tempfile.mkdtemp(prefix="blendin-chats-")
    app = ChatApp(load_pair=lambda: load_pair("gemma3-270m", "smollm2-135m-instruct", n_ctx=1024))
    async with app.run_test(size=(120, 34)) as pilot:
        while app.pair is None:
            await pilot.pause(0.1)
        screen = app.chat_screen
        screen.prompt.value = QUESTION
        await pilot.press("enter")
        while screen.job is not None or len(screen.chat.turns) < 2:
            await pilot.pause(0.1)
        await pilot.pause()
        await pilot.press("ctrl+t")
        view = screen.query(AssistantMessage).last().tokens
        # Select the most interesting token: one the guide changed, else a blended one.
        order = (Provenance.BLEND_GUIDE, Provenance.BLEND_AGREE, Provenance.BASE)
        pick = min(range(len(view.steps)), key=lambda i: order.index(view.steps[i].provenance)
                   if view.steps[i].provenance in order else 9)
        view.select(pick)
        await pilot.pause()
        print(repr(screen.chat.turns[-1].content), view.steps[pick])
        print(screen.query_one("#speed", Label).content)
        app.save_screenshot(str(out.name), path=str(out.parent))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "chat.svg"
    target.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
