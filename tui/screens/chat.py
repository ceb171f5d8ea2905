"""The chat screen: transcript, message box and side panel; replies decode in a thread worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, LoadingIndicator, Static
from textual.worker import get_current_worker

from blendin_local.errors import BlendinError
from blendin_local.fileio import path_inside, write_text_atomically
from blendin_local.generation.generate import Generation
from blendin_local.generation.steps import Step

from ..chat import Chat, Turn, to_markdown
from ..store import ChatFileError
from ..widgets.messages import AssistantMessage, UserMessage
from ..widgets.prompt import PromptInput
from ..widgets.side import StatsPanel
from ..widgets.tokens import TokenView
from .chats import ChatsScreen
from .host import ChatHost
from .settings import ChatSettings, SettingsScreen

WELCOME = (
    "Ask something and press Enter. The reply streams in coloured by who chose each token; "
    "esc stops it. ctrl+t switches finished replies between Markdown and tokens "
    "(click a token, or ←/→, to see its record). ctrl+p lists every action."
)


def summary_of(gen: Generation) -> dict[str, Any]:
    """The reply's numbers (``Result.to_dict()`` without the text, which the turn holds)."""
    summary = gen.result.to_dict()
    summary.pop("text", None)
    return summary


@dataclass(eq=False)
class ReplyJob:
    """One reply being generated: the chat it belongs to survives a switch to another chat."""

    chat: Chat
    turn: Turn
    widget: AssistantMessage
    generation: Generation
    done: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    made: list[Step] = field(default_factory=list)  # appended by the worker thread


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", tooltip="Stop the reply now (the partial reply is kept)"),
        Binding("ctrl+r", "regenerate", "Regenerate", tooltip="Write the last reply again"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+o", "open_chats", "Chats", tooltip="Re-open a saved chat"),
        Binding("ctrl+s", "settings", "Settings"),
        Binding("ctrl+t", "toggle_tokens", "Tokens", tooltip="Markdown / coloured tokens"),
        Binding("ctrl+y", "export", "Export", tooltip="Save the chat as Markdown"),
        Binding("ctrl+b", "toggle_side", "Panel", tooltip="Show or hide the side panel"),
    ]

    class StepReady(Message):
        def __init__(self, job: ReplyJob, step: Step, summary: dict[str, Any]) -> None:
            super().__init__()
            self.job, self.step, self.summary = job, step, summary

    class ReplyDone(Message):
        def __init__(self, job: ReplyJob, summary: dict[str, Any], error: str | None) -> None:
            super().__init__()
            self.job, self.summary, self.error = job, summary, error

    def __init__(self, chat: Chat) -> None:
        super().__init__()
        self.chat = chat
        self.job: ReplyJob | None = None
        self.panel_turn: Turn | None = None  # the reply the side panel describes

    @property
    def chat_app(self) -> ChatHost:
        return self.app  # type: ignore[return-value]

    # --- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield VerticalScroll(id="transcript")
                with Horizontal(id="status"):
                    yield LoadingIndicator()
                    yield Label("", id="status-text")
                yield PromptInput(placeholder="Message (Enter sends, ↑/↓ history)", id="prompt")
            yield StatsPanel(id="side")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#transcript", VerticalScroll).anchor()
        await self.show_chat(self.chat)
        self.query_one("#prompt").focus()
        await self.chat_app.start()

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def panel(self) -> StatsPanel:
        return self.query_one(StatsPanel)

    async def show_chat(self, chat: Chat) -> None:
        """Replace the transcript with ``chat``'s turns."""
        self.chat = chat
        await self.transcript.remove_children()
        widgets: list[Static | AssistantMessage] = [Static(WELCOME, id="welcome", markup=False)]
        for turn in chat.turns:
            widgets.append(UserMessage(turn.content) if turn.role == "user" else AssistantMessage(turn))
        await self.transcript.mount_all(widgets)
        self.transcript.scroll_end(animate=False)
        self.show_reply_stats(self._last_reply())
        self.panel.show_step(None)
        self.refresh_bindings()

    def show_reply_stats(self, turn: Turn | None, summary: dict[str, Any] | None = None) -> None:
        self.panel_turn = turn
        if turn is None:
            self.panel.show(self.chat_app.chat_settings.generation.to_dict(), None, [])
        else:
            self.panel.show(turn.settings or {}, summary or turn.summary, turn.steps)

    # --- models ---------------------------------------------------------------------------
    def show_status(self, text: str | None, *, error: bool = False) -> None:
        """Show (text) or hide (None) the status line above the message box."""
        status = self.query_one("#status")
        status.display = text is not None
        status.set_class(error, "-error")
        self.query_one(LoadingIndicator).display = text is not None and not error
        self.query_one("#status-text", Label).update(text or "")

    async def models_ready(self) -> None:
        self.show_status(None)
        if self.chat.turns and self.chat.turns[-1].role == "user" and self.job is None:
            await self.start_reply()  # a message sent while the models were loading

    # --- sending and generating -----------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    async def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.job is not None:
            self.notify("A reply is still being written: esc stops it.", severity="warning")
            return
        self.prompt.remember(text)
        self.prompt.value = ""
        self.chat.turns.append(Turn("user", text))
        await self.transcript.mount(UserMessage(text))
        self.save()
        await self.start_reply()

    async def start_reply(self) -> None:
        """Begin a reply to the chat's last (user) message."""
        app = self.chat_app
        if app.pair is None:
            if app.load_error:
                self.notify(f"No models: {app.load_error}", severity="error")
            else:
                self.notify("The models are still loading; the reply starts when they are ready.")
            return
        settings = app.chat_settings
        self.chat.system = settings.system
        try:
            generation = app.generate_fn(app.pair, self.chat.conversation(), settings.generation)
        except BlendinError as exc:
            self.notify(str(exc), title="Cannot generate", severity="error")
            return
        turn = Turn("assistant", "", settings=settings.generation.to_dict())
        self.chat.turns.append(turn)
        widget = AssistantMessage(turn, streaming=True)
        self.job = ReplyJob(self.chat, turn, widget, generation)
        await self.transcript.mount(widget)  # before any step arrives
        self.transcript.scroll_end(animate=False)
        self.show_reply_stats(turn, {})
        self.refresh_bindings()
        self.decode(self.job)

    @work(thread=True, group="generate", exit_on_error=False)
    def decode(self, job: ReplyJob) -> None:
        """Runs in a thread: iterate the generation, posting each step to the UI."""
        worker = get_current_worker()
        gen = job.generation
        error = None
        try:
            for step in gen:
                job.made.append(step)
                summary = gen.result.to_dict()
                summary["stop_reason"] = None  # still running
                self.post_message(self.StepReady(job, step, summary))
                if worker.is_cancelled:  # the app is closing
                    gen.cancel()
        except BlendinError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - keep the chat alive and say what happened
            error = f"generation failed: {type(exc).__name__}: {exc}"
        finally:
            job.done.set()
        self.post_message(self.ReplyDone(job, summary_of(gen), error))

    def on_chat_screen_step_ready(self, message: StepReady) -> None:
        job = message.job
        job.turn.steps.append(message.step)
        if job.chat is not self.chat:
            return
        job.widget.add_step(message.step)
        if self.panel_turn is job.turn:
            self.panel.show(job.turn.settings or {}, message.summary, job.turn.steps)

    async def on_chat_screen_reply_done(self, message: ReplyDone) -> None:
        job = message.job
        turn = job.turn
        turn.content = turn.streamed_text
        turn.summary = message.summary
        if self.job is job:
            self.job = None
        current = job.chat is self.chat
        if not turn.steps:  # nothing came (stopped or failed before the first token)
            job.chat.turns.remove(turn)
            if current:
                await job.widget.remove()
                if job.stopping and not message.error:
                    await self._unsend()
                self.show_reply_stats(self._last_reply())
        elif current:
            await job.widget.finish()
            if self.panel_turn is turn:
                self.show_reply_stats(turn)
        self.save(job.chat)
        if message.error:
            self.notify(message.error, title="Generation stopped", severity="error", timeout=10)
        for warning in message.summary.get("warnings") or ():
            self.notify(warning, severity="warning")
        self.refresh_bindings()

    async def _unsend(self) -> None:
        """Stopped before the first token: the message goes back to the box, to edit or resend."""
        if not self.chat.turns or self.chat.turns[-1].role != "user":
            return
        turn = self.chat.turns.pop()
        users = self.transcript.query(UserMessage)
        if users:
            await users.last().remove()
        if not self.prompt.value:
            self.prompt.value = turn.content
            self.prompt.cursor_position = len(turn.content)
        self.notify("Stopped before the first token: your message is back in the box.")

    def _last_reply(self) -> Turn | None:
        return next((t for t in reversed(self.chat.turns) if t.role == "assistant"), None)

    def halt(self) -> ReplyJob | None:
        """Ask the running reply to stop after the current token."""
        job = self.job
        if job is not None and not job.stopping:
            job.stopping = True
            job.generation.cancel()
        return job

    async def halt_and_wait(self) -> None:
        job = self.halt()
        if job is not None:
            await self.app.workers.wait_for_complete(
                [w for w in self.workers if w.group == "generate"]
            )
            self.job = None

    def on_unmount(self) -> None:
        """Closing the app: stop decoding and keep what was written."""
        job = self.halt()
        if job is None:
            return
        job.done.wait(timeout=5)
        job.turn.steps = list(job.made)  # with steps whose messages the UI never handled
        job.turn.content = job.turn.streamed_text
        job.turn.summary = summary_of(job.generation)
        if not job.turn.steps:
            job.chat.turns.remove(job.turn)
        self.save(job.chat)

    # --- actions ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        busy = self.job is not None
        if action == "stop":
            return True if busy else None
        if action in ("regenerate", "export"):
            return None if busy or not self.chat.turns else True
        return True

    def action_stop(self) -> None:
        self.halt()

    async def action_regenerate(self) -> None:
        if self.job is not None or not self.chat.turns:
            return
        while self.chat.turns and self.chat.turns[-1].role == "assistant":
            self.chat.turns.pop()
            replies = self.transcript.query(AssistantMessage)
            if replies:
                await replies.last().remove()
        await self.start_reply()

    async def action_new_chat(self) -> None:
        await self.halt_and_wait()
        await self.show_chat(self.chat_app.new_chat())
        self.prompt.focus()

    def action_open_chats(self) -> None:
        store = self.chat_app.store
        self.app.push_screen(ChatsScreen(store.list(), store.directory), self._open_chosen)

    async def _open_chosen(self, path: Path | None) -> None:
        if path is not None:
            await self.open_chat(path)

    async def open_chat(self, spec: str | Path) -> bool:
        try:
            chat = self.chat_app.store.load(spec)
        except ChatFileError as exc:
            self.notify(str(exc), title="Cannot open chat", severity="error", timeout=10)
            return False
        await self.halt_and_wait()
        self.chat_app.adopt_chat_settings(chat)
        await self.show_chat(chat)
        self.notify(f"Opened chat {chat.id}")
        return True

    def action_settings(self) -> None:
        self.app.push_screen(SettingsScreen(self.chat_app.chat_settings), self._settings_chosen)

    def _settings_chosen(self, settings: ChatSettings | None) -> None:
        if settings is None:
            return
        self.chat_app.chat_settings = settings
        self.chat.system = settings.system
        if self.panel_turn is None:
            self.show_reply_stats(None)
        self.notify(f"Settings saved: {settings.generation.method}; they apply to the next reply.")

    def action_toggle_tokens(self) -> None:
        on = not self.transcript.has_class("-tokens")
        self.transcript.set_class(on, "-tokens")
        if on:
            views = self.transcript.query(TokenView)
            if views:
                views.last().focus()
        elif isinstance(self.focused, TokenView):
            self.prompt.focus()

    def action_toggle_side(self) -> None:
        side = self.query_one("#side")
        side.display = not side.display

    def action_export(self) -> None:
        try:
            path = path_inside(self.chat_app.export_dir, f"chat-{self.chat.id}.md", "chat id")
            write_text_atomically(path, to_markdown(self.chat), "export")
        except BlendinError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"Exported to {path}", title="Export")

    # --- token selection ------------------------------------------------------------------
    def on_token_view_selected(self, message: TokenView.Selected) -> None:
        reply = next((a for a in message.view.ancestors if isinstance(a, AssistantMessage)), None)
        if reply is not None and reply.turn is not self.panel_turn and reply.turn.summary:
            self.show_reply_stats(reply.turn)
        self.panel.show_step(message.step)

    def save(self, chat: Chat | None = None) -> None:
        chat = chat or self.chat
        chat.settings = self.chat_app.chat_settings.generation.to_dict()
        chat.models = self.chat_app.models
        try:
            if chat.turns:
                self.chat_app.store.save(chat)
            else:  # e.g. its only message was taken back
                self.chat_app.store.delete(chat.id)
        except (OSError, BlendinError) as exc:
            self.notify(f"Autosave failed: {exc}", severity="error")
