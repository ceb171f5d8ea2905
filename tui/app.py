"""The chat app: holds the injected model pair (or loads it through the library in a worker),
the settings and the chat store; the chat screen does the rest."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from blendin_local import methods
from blendin_local.errors import BlendinError, UsageError
from blendin_local.generation.generate import generate
from blendin_local.pair import ModelPair
from blendin_local.settings import GenerationSettings, parse_alpha

from .chat import DEFAULT_SYSTEM, Chat
from .screens.chat import ChatScreen
from .screens.host import GenerateFn
from .screens.settings import ChatSettings
from .store import ChatStore

DARK, LIGHT = "textual-dark", "textual-light"
# Saved settings keys a resumed chat restores, unless given on the command line.
RESTORED = ("method", "gamma", "alpha", "support", "max_tokens", "temperature", "top_p")


def model_names(pair: ModelPair) -> dict[str, str]:
    roles = {"base": pair.base, "guide": pair.guide, "anti": pair.anti}
    return {role: engine.name for role, engine in roles.items() if engine is not None}


def restore_settings(
    current: GenerationSettings, saved: dict[str, Any] | None, keep: Collection[str] = ()
) -> GenerationSettings:
    """``current`` with a saved chat's settings, except the names in ``keep``; bad values are
    ignored (the chat still opens)."""
    if not saved:
        return current
    values = {k: saved[k] for k in RESTORED if k in saved and k not in keep}
    sampling = {k: values.pop(k) for k in ("temperature", "top_p") if k in values}
    if "alpha" in values:
        try:
            values["alpha"] = parse_alpha(values["alpha"])
        except UsageError:
            del values["alpha"]
    try:
        if "method" in values:
            methods.get(values["method"])
        return replace(current, sampling=replace(current.sampling, **sampling), **values)
    except (UsageError, TypeError):
        return current


class ChatApp(App[None]):
    """``blendin-local chat``.

    Args:
        pair: the models, already loaded (tests inject a fake pair).
        load_pair: or a function that loads them (run in a thread worker at start).
        generate_fn: the library's ``generate`` (injectable).
        settings: decoding settings of the first reply (diagnostics are switched on).
        resume: a chat id, ``last`` or a chat file to open at start.
        keep: settings names given on the command line, which a resumed chat does not override.
    """

    CSS_PATH = "app.tcss"
    TITLE = "blendin-local chat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "toggle_theme", "Light/dark", tooltip="Switch the dark and light theme"),
    ]

    def __init__(
        self,
        *,
        pair: ModelPair | None = None,
        load_pair: Callable[[], ModelPair] | None = None,
        generate_fn: GenerateFn = generate,
        settings: GenerationSettings | None = None,
        system: str = DEFAULT_SYSTEM,
        store: ChatStore | None = None,
        resume: str | None = None,
        keep: Collection[str] = (),
        export_dir: Path | None = None,
        light: bool = False,
    ) -> None:
        super().__init__()
        if pair is None and load_pair is None:
            raise ValueError("ChatApp needs a model pair or a function that loads one")
        self.pair = pair
        self.load_pair = load_pair
        self.load_error: str | None = None
        self.generate_fn = generate_fn
        generation = replace(settings or GenerationSettings(), diagnostics=True)
        self.chat_settings = ChatSettings(generation, system)
        self.store = store or ChatStore()
        self.resume = resume
        self.keep = frozenset(keep)
        self.export_dir = export_dir or Path.cwd()
        self.models: dict[str, str] = model_names(pair) if pair else {}
        self.theme = LIGHT if light else DARK

    def get_default_screen(self) -> Screen[Any]:
        return ChatScreen(self.new_chat())

    @property
    def chat_screen(self) -> ChatScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, ChatScreen)
        return screen

    def new_chat(self) -> Chat:
        return Chat(system=self.chat_settings.system)

    def adopt_chat_settings(self, chat: Chat) -> None:
        """A re-opened chat brings back its system prompt and decoding settings."""
        keep_system = "system" in self.keep
        generation = restore_settings(self.chat_settings.generation, chat.settings, self.keep)
        system = self.chat_settings.system if keep_system else chat.system
        chat.system = system
        self.chat_settings = ChatSettings(generation, system)

    async def start(self) -> None:
        """Called by the chat screen once it is mounted: load the models, re-open a chat."""
        if self.pair is not None:
            self.sub_title = " + ".join(self.models.values())
        else:
            self.chat_screen.show_status("Loading models…")
            self.load_models()
        if self.resume:
            await self.chat_screen.open_chat(self.resume)

    @work(thread=True, group="load", exit_on_error=False)
    def load_models(self) -> None:
        assert self.load_pair is not None
        try:
            pair = self.load_pair()
        except BlendinError as exc:
            self.call_from_thread(self._models_failed, str(exc))
        except Exception as exc:  # noqa: BLE001 - a clear notice instead of a dead UI
            self.call_from_thread(self._models_failed, f"{type(exc).__name__}: {exc}")
        else:
            self.call_from_thread(self._models_ready, pair)

    def _models_ready(self, pair: ModelPair) -> None:
        self.pair = pair
        self.models = model_names(pair)
        self.sub_title = " + ".join(self.models.values())
        self.call_next(self.chat_screen.models_ready)

    def _models_failed(self, error: str) -> None:
        self.load_error = error
        self.chat_screen.show_status(f"Could not load the models: {error}", error=True)
        self.notify(error, title="Could not load the models", severity="error", timeout=30)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.current_theme.dark else DARK

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        chat = self.chat_screen
        commands = [
            ("Stop the reply", "Stop generating; the partial reply is kept", chat.action_stop),
            ("Regenerate the last reply", "Write the last reply again with the current settings",
             chat.action_regenerate),
            ("New chat", "Start an empty chat (this one stays saved)", chat.action_new_chat),
            ("Open a saved chat", "List saved chats and re-open one", chat.action_open_chats),
            ("Settings", "Method, γ, α, support, sampling, max tokens, system prompt",
             chat.action_settings),
            ("Toggle token view", "Show replies as Markdown or as coloured tokens",
             chat.action_toggle_tokens),
            ("Export chat as Markdown", "Write chat-<id>.md in the current directory",
             chat.action_export),
            ("Toggle side panel", "Show or hide the statistics panel", chat.action_toggle_side),
            ("Toggle light/dark theme", "Switch between the dark and the light theme",
             self.action_toggle_theme),
        ]
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)
