"""The chat record, its JSON form, the store on disk and the Markdown export (no Textual)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from blendin_local.generation.generate import generate
from blendin_local.settings import GenerationSettings
from tui.chat import (
    Chat,
    ChatFormatError,
    Turn,
    new_chat_id,
    step_from_json,
    step_to_json,
    to_markdown,
)
from tui.chat_schema import CHAT_ID
from tui.store import ChatFileError, ChatStore, default_chats_dir

from fakes.chat import REPLY_BLEND, chat_pair


def answered_chat() -> Chat:
    chat = Chat(system="Be brief.")
    chat.turns.append(Turn("user", "What is the capital of France?"))
    settings = GenerationSettings(diagnostics=True)
    gen = generate(chat_pair(), chat.conversation(), settings)
    steps = list(gen)
    summary = gen.result.to_dict()
    summary.pop("text")
    chat.turns.append(Turn("assistant", gen.result.text, steps, summary, settings.to_dict()))
    return chat


def test_steps_round_trip_through_json() -> None:
    chat = answered_chat()
    for step in chat.turns[1].steps:
        back = step_from_json(json.loads(json.dumps(step_to_json(step))))
        assert replace(back, base_top=(), guide_top=()) == replace(step, base_top=(), guide_top=())
        for got, want in ((back.base_top, step.base_top), (back.guide_top, step.guide_top)):
            assert [(c.token, c.text) for c in got] == [(c.token, c.text) for c in want]
            assert [c.prob for c in got] == pytest.approx([c.prob for c in want], abs=1e-6)


def test_conversation_needs_the_user_last() -> None:
    chat = answered_chat()
    with pytest.raises(ValueError, match="user message last"):
        chat.conversation()
    chat.turns.append(Turn("user", "Why?"))
    conv = chat.conversation()
    assert conv.system == "Be brief." and conv.chat
    assert [m.content for m in conv.messages][1] == REPLY_BLEND


def test_store_save_load_list(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    chat = answered_chat()
    path = store.save(chat)
    assert path == tmp_path / f"{chat.id}.json"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    loaded = store.load(chat.id)
    assert loaded.to_json() == chat.to_json()
    assert store.load(str(path)).id == chat.id
    assert store.resolve("last") == path
    (tmp_path / "bad.json").write_text('{"version": 99, "turns": []}')
    entries = store.list()
    assert [e.id for e in entries] == [chat.id, "bad"]
    assert entries[0].title == "What is the capital of France?" and entries[0].turns == 2
    assert "unsupported chat format version 99" in (entries[1].error or "")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[1, 2]", "not a blendin-local chat"),
        ('{"version": 1, "id": "20260101-120000-0c01", "turns": [{"role": "robot", "content": ""}]}',
         "turns\\[0\\].role must be"),
    ],
)
def test_unreadable_chats_raise_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "c.json").write_text(content)
    with pytest.raises(ChatFileError, match=message):
        ChatStore(tmp_path).load("c")


def test_missing_chat(tmp_path: Path) -> None:
    with pytest.raises(ChatFileError, match="no chat 'nope'"):
        ChatStore(tmp_path).load("nope")
    with pytest.raises(ChatFileError, match="no saved chats"):
        ChatStore(tmp_path).resolve("last")


def test_new_ids_have_the_form_checked_on_load() -> None:
    assert CHAT_ID.fullmatch(new_chat_id())


@pytest.mark.parametrize("chat_id", ["../victim", "/tmp/victim", "a/../../victim"])
def test_store_never_writes_outside_its_folder(chat_id: str, tmp_path: Path) -> None:
    """Issue 16, item 1: the id names the file; one that leads out is refused before any write."""
    folder = tmp_path / "chats"
    victim = tmp_path / "victim.json"
    victim.write_text("precious\n")
    store = ChatStore(folder)
    chat = answered_chat()
    chat.id = chat_id
    with pytest.raises(ChatFileError, match="would lead out of"):
        store.save(chat)
    with pytest.raises(ChatFileError, match="would lead out of"):
        store.delete(chat_id)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["chats", "victim.json"]


def test_chats_dir_from_environment(chats_dir: Path) -> None:
    assert default_chats_dir() == chats_dir
    assert ChatStore().directory == chats_dir


def test_chat_from_json_rejects_other_files() -> None:
    with pytest.raises(ChatFormatError):
        Chat.from_json({"hello": 1})


def test_markdown_export() -> None:
    text = to_markdown(answered_chat())
    assert text.startswith("# What is the capital of France?")
    assert "> **System:** Be brief." in text
    assert f"## Assistant\n\n{REPLY_BLEND}" in text
    assert "*blendin: 8 tokens, 2 interventions (25%), guide changed 1, stop: eos*" in text
