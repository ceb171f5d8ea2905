"""Pilot-driven tests of the chat app on the scripted fake pair (see tests/fakes/chat.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widgets import Label, Markdown, Select, Sparkline, Static

from blendin_local.errors import ModelFileError, UsageError
from blendin_local.generation.generate import generate
from blendin_local.generation.steps import Provenance
from blendin_local.settings import GenerationSettings
from tui.app import ChatApp, restore_settings
from tui.screens.chats import ChatsScreen
from tui.screens.settings import SettingsScreen, parse_form
from tui.widgets.messages import AssistantMessage
from tui.widgets.prompt import PromptInput
from tui.widgets.side import StepDetail
from tui.widgets.tokens import Legend, TokenView

from driving import ask, idle, plain, send, wait_until
from fakes.chat import REPLY_BASE, REPLY_BLEND, chat_pair

SIZE = (120, 36)
QUESTION = "What is the capital of France?"


def make_app(tmp_path: Path, **kwargs) -> ChatApp:
    kwargs.setdefault("pair", chat_pair())
    return ChatApp(export_dir=tmp_path, **kwargs)


def replies(app: ChatApp) -> list[AssistantMessage]:
    return list(app.chat_screen.query(AssistantMessage))


def token_styles(view: TokenView) -> dict[int, tuple[object, object, bool]]:
    """(colour, background, bold) of each token as drawn on screen, by step index."""
    out: dict[int, tuple[object, object, bool]] = {}
    for strip in view.render_lines(Region(0, 0, view.size.width, view.size.height)):
        for segment in strip:
            style = segment.style
            if style is not None and "token" in style.meta:
                out[style.meta["token"]] = (style.color, style.bgcolor, bool(style.bold))
    return out


async def test_message_gets_streamed_reply(tmp_path: Path) -> None:
    gate = threading.Event()
    app = make_app(tmp_path, pair=chat_pair(hold=(4, gate)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#prompt")
        await pilot.press(*QUESTION, "enter")
        # Mid-reply (the base is held before its 5th token): three tokens are on screen.
        await wait_until(pilot, lambda: replies(app) and len(replies(app)[0].tokens.steps) == 3,
                         "the first tokens")
        reply = replies(app)[0]
        assert reply.has_class("-streaming")
        assert reply.tokens.display and not reply.query_one(Markdown).display
        assert "".join(s.text for s in reply.tokens.steps) == " The capital of"
        assert "generating" in plain(reply.query_one(".reply-footer", Label).content)
        gate.set()
        await wait_until(pilot, lambda: idle(app), "the end of the reply")
        await pilot.pause()
        assert not reply.has_class("-streaming")
        assert app.chat_screen.chat.turns[-1].content == REPLY_BLEND
        markdown = reply.query_one(Markdown)
        assert markdown.display and not reply.tokens.display
        assert markdown.source == REPLY_BLEND
        assert "guide changed 1" in plain(reply.query_one(".reply-footer", Label).content)


async def test_tokens_are_styled_by_provenance(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await pilot.press("ctrl+t")
        view = replies(app)[0].tokens
        assert view.display
        steps = view.steps
        kinds = [s.provenance for s in steps]
        assert kinds[1] is Provenance.BLEND_AGREE and kinds[5] is Provenance.BLEND_GUIDE
        assert kinds[0] is Provenance.BASE
        view.cursor = None
        await pilot.pause()
        styles = token_styles(view)
        assert len(styles) == len(steps)
        base, agree, changed = styles[0], styles[1], styles[5]
        assert len({base, agree, changed}) == 3  # three different looks
        assert all(styles[i] == base for i in (2, 3, 4, 6))  # the other base tokens
        assert changed[2] and not base[2]  # "guide changed" is bold too
        # The legend uses the same looks.
        legend = app.chat_screen.query_one(Legend)
        assert legend.get_visual_style("prov--blend-guide", partial=True) == view.get_visual_style(
            "prov--blend-guide", partial=True)


async def test_stop_key_halts_a_long_reply_and_keeps_it(tmp_path: Path) -> None:
    gate = threading.Event()
    settings = GenerationSettings(max_tokens=2000)
    app = make_app(tmp_path, pair=chat_pair(long=True, hold=(6, gate)), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go on")
        await wait_until(pilot, lambda: replies(app) and len(replies(app)[0].tokens.steps) == 5,
                         "five tokens")
        await pilot.press("escape")
        gate.set()  # the token in flight completes; no other one starts
        await wait_until(pilot, lambda: idle(app), "the stop")
        await pilot.pause()
        turn = app.chat_screen.chat.turns[-1]
        assert turn.summary is not None and turn.summary["stop_reason"] == "cancelled"
        assert len(turn.steps) == 6
        assert turn.content == " blah" * 6
        assert replies(app)[0].query_one(Markdown).source == turn.content
        saved = json.loads(next((tmp_path / "chats").glob("*.json")).read_text())
        assert saved["turns"][-1]["content"] == turn.content


async def test_stop_before_the_first_token_gives_the_message_back(
    tmp_path: Path, chats_dir: Path
) -> None:
    gate = threading.Event()
    app = make_app(tmp_path, pair=chat_pair(hold=(0, gate)))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, QUESTION)
        assert list(chats_dir.glob("*.json"))  # saved with the message
        await pilot.press("escape")
        gate.set()
        await wait_until(pilot, lambda: idle(app), "the stop")
        await pilot.pause()
        assert app.chat_screen.chat.turns == []
        assert replies(app) == [] and app.chat_screen.prompt.value == QUESTION
        assert not list(chats_dir.glob("*.json"))


async def test_settings_change_the_next_reply(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#method", Select).value = "base"
        await pilot.click("#gamma")
        await pilot.press("end", "ctrl+u", *"0.5")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        assert app.chat_settings.generation.method == "base"
        assert app.chat_settings.generation.gamma == 0.5
        assert app.chat_settings.generation.diagnostics  # top-5 stays on
        await ask(pilot, "And again?")
        first, second = app.chat_screen.chat.turns[1], app.chat_screen.chat.turns[3]
        assert first.content == REPLY_BLEND and first.settings["method"] == "blendin"
        assert second.content == REPLY_BASE and second.settings["method"] == "base"
        assert {s.provenance for s in second.steps} == {Provenance.BASE}


async def test_invalid_setting_is_refused_with_a_notice(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        await pilot.click("#alpha")
        await pilot.press("end", "ctrl+u", *"1.5", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # still open
        assert any("--alpha" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        assert app.chat_settings.generation.alpha is None


async def test_regenerate_replaces_the_last_reply(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        old = app.chat_screen.chat.turns[-1]
        app.chat_settings = type(app.chat_settings)(
            app.chat_settings.generation.__class__(method="base", diagnostics=True), "Be brief."
        )
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: idle(app) and app.chat_screen.chat.turns[-1] is not old,
                         "the new reply")
        await pilot.pause()
        turns = app.chat_screen.chat.turns
        assert [t.role for t in turns] == ["user", "assistant"]
        assert turns[-1].content == REPLY_BASE
        assert len(replies(app)) == 1
        assert app.chat_screen.chat.system == "Be brief."


async def test_selecting_a_token_shows_its_record(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await pilot.press("ctrl+t")
        view = replies(app)[0].tokens
        # Click on " Paris" (the tokens sit on one line: " The capital of France is Paris.").
        x = len(" The capital of France is") + 2
        await pilot.click(view, offset=(x, 0))
        detail = app.chat_screen.query_one(StepDetail)
        assert detail.step is not None and detail.step.text == " Paris"
        text = plain(detail.content)
        assert "blend: guide changed" in text
        assert "' Lyon'" in text and "' Paris'" in text  # both top-5 lists
        assert "0.900" in text  # the guide's probability of " Paris"
        assert f"{detail.step.alpha:.3f}" in text
        # Keyboard: ← moves to the previous token.
        await pilot.press("left")
        assert detail.step.text == " is"
        await pilot.press("end")
        assert detail.step.index == len(view.steps) - 1


async def test_input_history(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "one")
        await ask(pilot, "two")
        prompt = app.chat_screen.query_one(PromptInput)
        await pilot.press(*"dra", "up")
        assert prompt.value == "two"
        await pilot.press("up", "up")
        assert prompt.value == "one"
        await pilot.press("down")
        assert prompt.value == "two"
        await pilot.press("down")
        assert prompt.value == "dra"


async def test_autosave_and_resume(tmp_path: Path, chats_dir: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await ask(pilot, "Thanks!")
        chat_id = app.chat_screen.chat.id
    path = chats_dir / f"{chat_id}.json"
    data = json.loads(path.read_text())
    assert [t["role"] for t in data["turns"]] == ["user", "assistant", "user", "assistant"]
    assert data["title"] == QUESTION

    for spec in (chat_id, "last", str(path)):
        again = make_app(tmp_path, resume=spec)
        async with again.run_test(size=SIZE) as pilot:
            await pilot.pause()
            chat = again.chat_screen.chat
            assert chat.id == chat_id
            assert [t.content for t in chat.turns][:2] == [QUESTION, REPLY_BLEND]
            restored = replies(again)
            assert len(restored) == 2
            assert restored[0].query_one(Markdown).source == REPLY_BLEND
            steps = restored[0].tokens.steps
            assert [s.provenance for s in steps][5] is Provenance.BLEND_GUIDE
            assert steps[5].guide_top[0].text == " Paris"
            # The chat goes on where it was.
            await ask(pilot, "More?")
            assert len(again.chat_screen.chat.turns) == 6
        again_data = json.loads(path.read_text())
        assert len(again_data["turns"]) == 6
        path.write_text(json.dumps(data))  # back to 4 turns for the next spec


async def test_unreadable_chat_gives_a_notice(tmp_path: Path, chats_dir: Path) -> None:
    chats_dir.mkdir(parents=True)
    (chats_dir / "broken.json").write_text("{ not json")
    app = make_app(tmp_path, resume="broken")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert any("broken.json is not valid JSON" in m for m in messages), messages
        assert app.chat_screen.chat.turns == []
        # The chats list shows it as unreadable; choosing it gives the notice again.
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatsScreen)
        assert app.screen.entries[0].error is not None
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ChatsScreen)
        assert sum("not valid JSON" in str(n.message) for n in app._notifications) == 2


async def test_chats_list_reopens_a_chat(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        first = app.chat_screen.chat.id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.chat_screen.chat.id != first and replies(app) == []
        await ask(pilot, "Another question")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatsScreen)
        titles = [e.title for e in app.screen.entries]
        assert set(titles) == {QUESTION, "Another question"}
        await pilot.press(*["down"] * titles.index(QUESTION), "enter")
        await pilot.pause()
        assert app.chat_screen.chat.id == first
        assert replies(app)[0].turn.content == REPLY_BLEND


async def test_export_markdown(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await pilot.press("ctrl+y")
        await pilot.pause()
        out = tmp_path / f"chat-{app.chat_screen.chat.id}.md"
        text = out.read_text()
        assert f"## User\n\n{QUESTION}" in text
        assert f"## Assistant\n\n{REPLY_BLEND}" in text
        assert "blendin: 8 tokens, 2 interventions" in text


async def test_models_load_in_a_worker(tmp_path: Path) -> None:
    release = threading.Event()

    def load():
        release.wait(timeout=20)
        return chat_pair()

    app = make_app(tmp_path, pair=None, load_pair=load)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status = app.chat_screen.query_one("#status")
        assert status.display and "Loading models" in plain(
            app.chat_screen.query_one("#status-text", Label).content)
        # The UI answers while loading: typing works, and a message waits for the models.
        await send(pilot, QUESTION)
        assert app.chat_screen.chat.turns[-1].content == QUESTION
        assert app.pair is None
        release.set()
        await wait_until(pilot, lambda: len(app.chat_screen.chat.turns) == 2 and idle(app),
                         "the reply after loading")
        await pilot.pause()
        assert not status.display
        assert app.chat_screen.chat.turns[-1].content == REPLY_BLEND
        assert app.sub_title == "fake-base + fake-guide"


async def test_model_load_failure_is_shown(tmp_path: Path) -> None:
    def load():
        raise ModelFileError("model file not found: nope.gguf")

    app = make_app(tmp_path, pair=None, load_pair=load)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.load_error is not None, "the load error")
        await pilot.pause()
        status_text = plain(app.chat_screen.query_one("#status-text", Label).content)
        assert "nope.gguf" in status_text
        await send(pilot, "hi")
        await pilot.pause()
        assert any("No models" in str(n.message) for n in app._notifications)


async def test_generation_error_is_a_notice(tmp_path: Path) -> None:
    app = make_app(tmp_path, settings=GenerationSettings(method="proxy"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        await pilot.pause()
        assert any("anti-expert" in str(n.message) for n in app._notifications)
        assert [t.role for t in app.chat_screen.chat.turns] == ["user"]
        assert idle(app)


async def test_generate_function_is_injected(tmp_path: Path) -> None:
    calls = []

    def spy(pair, conv, settings):
        calls.append((conv, settings))
        return generate(pair, conv, settings)

    app = make_app(tmp_path, generate_fn=spy, system="Answer in one line.")
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        await ask(pilot, "Why?")
    conv, settings = calls[-1]
    assert settings.diagnostics
    assert conv.system == "Answer in one line."
    assert [m.role for m in conv.messages] == ["user", "assistant", "user"]
    assert conv.messages[1].content == REPLY_BLEND


async def test_theme_toggle_and_palette_commands(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_theme.dark
        await pilot.press("ctrl+l")
        assert not app.current_theme.dark
        await pilot.press("ctrl+l")
        assert app.current_theme.dark
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for wanted in ("Stop the reply", "Regenerate the last reply", "New chat",
                       "Open a saved chat", "Settings", "Toggle token view",
                       "Export chat as Markdown", "Toggle side panel", "Toggle light/dark theme"):
            assert wanted in titles


async def test_side_panel_is_live_during_generation(tmp_path: Path) -> None:
    gate = threading.Event()
    app = make_app(tmp_path, pair=chat_pair(hold=(7, gate)))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, QUESTION)
        spark = app.chat_screen.query_one("#spark-b", Sparkline)
        await wait_until(pilot, lambda: len(spark.data or []) == 6, "a partial sparkline")
        assert app.chat_screen.job is not None
        live = plain(app.chat_screen.query_one("#summary", Static).content)
        assert "33%" in live  # 2 interventions in 6 tokens, while streaming
        gate.set()
        await wait_until(pilot, lambda: idle(app), "the end of the reply")
        await pilot.pause()
        data = list(spark.data or ())
        assert len(data) == 8
        assert data[5] == pytest.approx(0.35, abs=1e-6)
        summary = plain(app.chat_screen.query_one("#summary", Static).content)
        assert "25%" in summary  # 2 interventions in 8 tokens
        await pilot.press("ctrl+b")
        assert not app.chat_screen.query_one("#side").display


async def test_command_palette_runs_an_action(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, QUESTION)
        first = app.chat_screen.chat.id
        await pilot.press("ctrl+p", *"new chat")
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat_screen.chat.id != first, "the new chat")
        assert replies(app) == []


async def test_quitting_mid_reply_keeps_the_partial_reply(tmp_path: Path, chats_dir: Path) -> None:
    gate = threading.Event()
    app = make_app(tmp_path, pair=chat_pair(long=True, hold=(4, gate)))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go on")
        await wait_until(pilot, lambda: replies(app) and len(replies(app)[0].tokens.steps) == 3,
                         "three tokens")
        threading.Timer(0.2, gate.set).start()  # the token in flight ends while the app closes
    data = json.loads(next(chats_dir.glob("*.json")).read_text())
    assert [t["role"] for t in data["turns"]] == ["user", "assistant"]
    assert data["turns"][1]["content"] == " blah" * 4
    assert len(data["turns"][1]["steps"]) == 4


def test_resumed_chat_settings_unless_given_on_the_command_line() -> None:
    current = GenerationSettings(method="blendin", gamma=0.4, diagnostics=True)
    saved = GenerationSettings(method="base", gamma=0.7, alpha=0.3, max_tokens=64).to_dict()
    restored = restore_settings(current, saved)
    assert (restored.method, restored.gamma, restored.alpha, restored.max_tokens) == (
        "base", 0.7, 0.3, 64)
    assert restored.diagnostics
    kept = restore_settings(current, saved, keep={"gamma"})
    assert kept.gamma == 0.4 and kept.method == "base"
    assert restore_settings(current, {"gamma": -1}) == current  # bad values are ignored


def test_settings_form_names_the_bad_field() -> None:
    base = GenerationSettings()
    form = dict(method="blendin", gamma="0.4", alpha="auto", support="full", temperature="0",
                top_p="1", max_tokens="256")
    assert parse_form(base, **form) == base
    with pytest.raises(UsageError, match="max tokens must be a whole number"):
        parse_form(base, **{**form, "max_tokens": "1.5"})
    with pytest.raises(UsageError, match="--top-p"):
        parse_form(base, **{**form, "top_p": "0"})
    assert parse_form(base, **{**form, "alpha": "0.25", "temperature": "0.7"}).alpha == 0.25
