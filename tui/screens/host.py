"""What the chat screen needs of the app that hosts it (``tui.app.ChatApp`` is one): the screen
depends on this, not on the app module, so the two do not import each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from blendin_local.generation.generate import Generation
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from ..chat import Chat
from ..store import ChatStore
from .settings import ChatSettings

GenerateFn = Callable[[ModelPair, Conversation, GenerationSettings], Generation]


class ChatHost(Protocol):
    pair: ModelPair | None
    load_error: str | None
    generate_fn: GenerateFn
    chat_settings: ChatSettings
    store: ChatStore
    models: dict[str, str]
    export_dir: Path

    async def start(self) -> None: ...

    def new_chat(self) -> Chat: ...

    def adopt_chat_settings(self, chat: Chat) -> None: ...
