"""Chats on disk: one JSON file per chat, written atomically after every message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from blendin_local.errors import BlendinError
from blendin_local.fileio import path_inside, write_text_atomically
from blendin_local.user_dirs import user_data_folder

from .chat import Chat, ChatFormatError, now

CHATS_ENV = "BLENDIN_CHATS_DIR"


class ChatFileError(BlendinError):
    """A chat that cannot be read; the message says which file and why."""


def default_chats_dir() -> Path:
    """``$BLENDIN_CHATS_DIR``, else ``<user data dir>/blendin-local/chats``."""
    return user_data_folder("chats", CHATS_ENV)


@dataclass(frozen=True)
class ChatEntry:
    """A line of the chats list; ``error`` is set for a file that cannot be read."""

    path: Path
    id: str
    title: str
    updated: str
    turns: int
    error: str | None = None


class ChatStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_chats_dir()

    def path_for(self, chat_id: str) -> Path:
        """The file of ``chat_id``, checked to stay in the chats folder (an id is read from data)."""
        try:
            return path_inside(self.directory, f"{chat_id}.json", "chat id")
        except BlendinError as exc:
            raise ChatFileError(str(exc)) from None

    def save(self, chat: Chat) -> Path:
        """Write ``chat`` (temp file + rename: a crash never leaves half a chat); raises
        ``OSError`` or :class:`BlendinError` (one line) when it cannot."""
        chat.updated = now()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(chat.id)
        write_text_atomically(path, json.dumps(chat.to_json(), ensure_ascii=False, indent=1),
                              "autosave")
        return path

    def delete(self, chat_id: str) -> None:
        self.path_for(chat_id).unlink(missing_ok=True)

    def resolve(self, spec: str) -> Path:
        """A chat id, ``last``, or a path to a chat file → its path."""
        if spec == "last":
            entries = self.list()
            if not entries:
                raise ChatFileError(f"no saved chats in {self.directory}")
            return entries[0].path
        path = Path(spec).expanduser()
        if path.suffix == ".json" or path.exists():
            return path
        return self.path_for(spec)

    def load(self, spec: str | Path) -> Chat:
        """Raises :class:`ChatFileError` with a message fit for the user."""
        path = spec if isinstance(spec, Path) else self.resolve(spec)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ChatFileError(f"no chat {path.stem!r} ({path} does not exist)") from None
        except OSError as exc:
            raise ChatFileError(f"cannot read {path}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ChatFileError(f"{path} is not valid JSON ({exc})") from None
        try:
            return Chat.from_json(data)
        except ChatFormatError as exc:
            raise ChatFileError(f"{path}: {exc}") from None

    def list(self) -> list[ChatEntry]:
        """Every chat file, most recently updated first; unreadable files are listed too."""
        if not self.directory.is_dir():
            return []
        entries = []
        for path in self.directory.glob("*.json"):
            try:
                chat = self.load(path)
            except ChatFileError as exc:
                mtime = path.stat().st_mtime if path.exists() else 0.0
                stamp = f"~{mtime:.0f}"
                entries.append(ChatEntry(path, path.stem, "(unreadable)", stamp, 0, str(exc)))
                continue
            entries.append(ChatEntry(path, chat.id, chat.title, chat.updated, len(chat.turns)))
        return sorted(entries, key=lambda e: (e.error is None, e.updated), reverse=True)
