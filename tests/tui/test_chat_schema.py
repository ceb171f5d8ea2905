"""Saved chats with fields of the wrong type (issue 9, item 12): refused on load with a message that
names the field, shown as the app's notice, the file left untouched and the app still usable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tui.app import ChatApp
from tui.chat import Chat, Turn
from tui.chat_schema import check_chat
from tui.store import ChatFileError, ChatStore

from driving import ask
from fakes.chat import chat_pair

SIZE = (120, 36)


def saved_chat(tmp_path: Path) -> dict[str, Any]:
    """A real chat written by the app (two turns, the reply with its steps)."""
    store = ChatStore(tmp_path / "made")
    chat = Chat(id="20260101-120000-0c01", turns=[Turn("user", "Hi?")])
    chat.settings = {"method": "blendin", "gamma": 0.4, "alpha": "auto", "seed": None}
    from blendin_local.generation.generate import generate
    from blendin_local.settings import GenerationSettings

    gen = generate(chat_pair(), chat.conversation(), GenerationSettings(max_tokens=6,
                                                                         diagnostics=True))
    steps = list(gen)
    summary = {k: v for k, v in gen.result.to_dict().items() if k != "text"}
    chat.turns.append(Turn("assistant", gen.result.text, steps, summary, dict(chat.settings)))
    return json.loads(store.save(chat).read_text())


def damage(data: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    node: Any = data
    *path, last = where.split(".")
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return data


DAMAGES = [
    ("turns.1.summary", "str", "turns[1].summary must be an object or null, got 'str'"),
    ("turns.1.settings", "x", "turns[1].settings must be an object or null, got 'x'"),
    ("turns.1.steps.0.b", "notanumber", "turns[1].steps[0].b must be a number or null"),
    ("turns.1.steps.0.token", 1.5, "turns[1].steps[0].token must be an integer, got 1.5"),
    ("turns.1.steps.0.piece", "zz", "turns[1].steps[0].piece must be hex digits"),
    ("turns.1.steps.0.provenance", "nobody", "turns[1].steps[0].provenance must be 'base' or"),
    ("turns.1.steps.0.base_top", [[1, "a"]], "turns[1].steps[0].base_top must be a list of"),
    ("turns.1.summary.intervention_rate", "x", "turns[1].summary.intervention_rate must be a"),
    ("turns.1.settings.gamma", [], "turns[1].settings.gamma must be a number, got []"),
    ("turns.0.content", None, "turns[0].content must be a string, got None"),
    ("turns.0", "hello", "turns[0] must be an object, got 'hello'"),
    ("settings", 3, "chat.settings must be an object or null, got 3"),
    ("models", {"base": 1}, "chat.models must be an object of strings"),
    ("turns", {}, "chat.turns must be a list"),
    # The id names the file the chat is saved to (issue 16, item 1).
    ("id", "../victim", "chat.id must be a chat id like 20261130-104512-3fa9, got '../victim'"),
    ("id", "/tmp/victim", "chat.id must be a chat id like"),
    ("id", "20260101-120000-0c01/../../x", "chat.id must be a chat id like"),
    ("id", 7, "chat.id must be a chat id like"),
]


def test_the_saved_chat_passes(tmp_path: Path) -> None:
    data = saved_chat(tmp_path)
    check_chat(data)
    assert len(data["turns"][1]["steps"]) == 6


@pytest.mark.parametrize("where, value, message", DAMAGES)
def test_store_refuses_a_wrong_type(where: str, value: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    text = json.dumps(damage(saved_chat(tmp_path), where, value))
    path.write_text(text)
    with pytest.raises(ChatFileError, match="damaged chat: ") as err:
        ChatStore(tmp_path).load(path)
    assert message in str(err.value)
    assert path.read_text() == text


@pytest.mark.parametrize("where, value, message", DAMAGES[:3])
async def test_resume_shows_the_notice_and_keeps_the_file(where: str, value: Any, message: str,
                                                          tmp_path: Path, chats_dir: Path) -> None:
    chats_dir.mkdir(parents=True)
    path = chats_dir / "bad.json"
    text = json.dumps(damage(saved_chat(tmp_path), where, value))
    path.write_text(text)
    app = ChatApp(export_dir=tmp_path, pair=chat_pair(), resume="bad")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        notices = [str(n.message) for n in app._notifications]
        assert any(message in n and "bad.json" in n for n in notices), notices
        assert app.chat_screen.chat.turns == []
        await ask(pilot, "Still there?")  # the app is usable
        assert len(app.chat_screen.chat.turns) == 2
    assert path.read_text() == text


async def test_a_chat_whose_id_leads_out_is_never_saved_there(tmp_path: Path,
                                                               chats_dir: Path) -> None:
    """Issue 16, item 1: autosave used to write ``<chats>/../victim.json``."""
    chats_dir.mkdir(parents=True)
    victim = tmp_path / "victim.json"
    victim.write_text("precious\n")
    evil = chats_dir / "evil.json"
    evil.write_text(json.dumps(damage(saved_chat(tmp_path), "id", "../victim")))
    app = ChatApp(export_dir=tmp_path, pair=chat_pair(), resume="evil")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        notices = [str(n.message) for n in app._notifications]
        assert any("chat.id must be a chat id" in n for n in notices), notices
        await ask(pilot, "Still there?")  # autosaves a new chat, under its own id
        chat_id = app.chat_screen.chat.id
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in chats_dir.iterdir()) == sorted(["evil.json", f"{chat_id}.json"])


async def test_export_never_writes_outside_its_folder(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "chat-x").mkdir(parents=True)
    victim = tmp_path / "victim.md"
    victim.write_text("precious\n")
    app = ChatApp(export_dir=export, pair=chat_pair())
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "Hi?")
        app.chat_screen.chat.id = "x/../../victim"  # only code can make such a chat now
        await pilot.press("ctrl+y")
        await pilot.pause()
        notices = [str(n.message) for n in app._notifications]
        assert any("would lead out of" in n for n in notices), notices
    assert victim.read_text() == "precious\n"
