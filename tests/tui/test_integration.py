"""The chat app on the real default model pair (gemma3-270m base, smollm2-135m-instruct guide)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blendin_local.models import load_catalog, load_pair
from tui.app import ChatApp
from tui.widgets.side import StepDetail

from driving import ask, idle, wait_until

BASE, GUIDE = "gemma3-270m", "smollm2-135m-instruct"


def _fetched() -> bool:
    entries, _ = load_catalog()
    return all(entries[name].fetched for name in (BASE, GUIDE))


@pytest.mark.integration
async def test_real_pair_answers_the_capital_of_france(tmp_path: Path) -> None:
    if not _fetched():
        pytest.fail("the default pair is not fetched: run `make models` (or blendin-local models fetch)")
    app = ChatApp(load_pair=lambda: load_pair(BASE, GUIDE, n_ctx=1024), export_dir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: app.pair is not None or app.load_error is not None,
                         "the models", timeout=60)
        assert app.load_error is None, app.load_error
        await ask(pilot, "What is the capital of France?", timeout=90)
        assert idle(app)
        reply = app.chat_screen.chat.turns[-1]
        assert "Paris" in reply.content
        assert reply.summary is not None and reply.summary["tokens"] == len(reply.steps) > 0
        assert reply.steps[0].base_top  # diagnostics are on: top-5 candidates are filled
        await pilot.press("ctrl+t", "home")
        detail = app.chat_screen.query_one(StepDetail)
        assert detail.step is reply.steps[0]
