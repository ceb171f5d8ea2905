"""A chat as plain data: turns, each reply's step records, and its JSON form (no Textual here)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from blendin_local.generation.steps import Candidate, Provenance, Step
from blendin_local.prompts import CHAT_SYSTEM, Conversation, Message, chat_conversation

from .chat_schema import SchemaError, check_chat

FORMAT_VERSION = 1
DEFAULT_SYSTEM = CHAT_SYSTEM
TITLE_CHARS = 60


class ChatFormatError(ValueError):
    """A chat file that is not a chat this program wrote."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_chat_id() -> str:
    """Sortable by creation time, unique enough for one user's chats; a saved chat's id is checked
    against this form (``chat_schema.CHAT_ID``)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class Turn:
    """One message. A reply (``role == "assistant"``) also keeps how it was made."""

    role: str
    content: str
    steps: list[Step] = field(default_factory=list)
    summary: dict[str, Any] | None = None  # Result.to_dict() without the text
    settings: dict[str, Any] | None = None  # GenerationSettings.to_dict() of this reply

    @property
    def streamed_text(self) -> str:
        return "".join(s.text for s in self.steps)


@dataclass
class Chat:
    id: str = field(default_factory=new_chat_id)
    system: str = DEFAULT_SYSTEM
    turns: list[Turn] = field(default_factory=list)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    settings: dict[str, Any] | None = None  # the settings in force when last saved
    models: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        first = next((t.content for t in self.turns if t.role == "user"), "")
        line = " ".join(first.split())
        return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"

    def conversation(self) -> Conversation:
        """The conversation the next reply answers (the last turn must be the user's)."""
        return chat_conversation([Message(t.role, t.content) for t in self.turns], self.system)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "system": self.system,
            "settings": self.settings,
            "models": self.models,
            "turns": [_turn_to_json(t) for t in self.turns],
        }

    @classmethod
    def from_json(cls, data: Any) -> Chat:
        """Raises :class:`ChatFormatError` naming what is wrong."""
        if not isinstance(data, dict) or "turns" not in data:
            raise ChatFormatError("not a blendin-local chat (no 'turns')")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise ChatFormatError(f"unsupported chat format version {version!r}")
        try:
            check_chat(data)
        except SchemaError as exc:
            raise ChatFormatError(f"damaged chat: {exc}") from None
        try:
            return cls(
                id=str(data["id"]),
                system=str(data.get("system", "")),
                turns=[_turn_from_json(t) for t in data["turns"]],
                created=str(data.get("created", "")),
                updated=str(data.get("updated", "")),
                settings=data.get("settings"),
                models=dict(data.get("models") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChatFormatError(f"damaged chat record ({type(exc).__name__}: {exc})") from None


def _turn_to_json(turn: Turn) -> dict[str, Any]:
    out: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.role == "assistant":
        out["summary"] = turn.summary
        out["settings"] = turn.settings
        out["steps"] = [step_to_json(s) for s in turn.steps]
    return out


def _turn_from_json(data: dict[str, Any]) -> Turn:
    role = data["role"]
    if role not in ("user", "assistant"):
        raise ValueError(f"unknown role {role!r}")
    return Turn(
        role=role,
        content=str(data["content"]),
        steps=[step_from_json(s) for s in data.get("steps") or ()],
        summary=data.get("summary"),
        settings=data.get("settings"),
    )


def step_to_json(step: Step) -> dict[str, Any]:
    """The library's trace record, with the piece kept losslessly as hex."""
    record = step.to_record()
    record["piece"] = step.piece.hex()
    return record


def step_from_json(record: dict[str, Any]) -> Step:
    fields = dict(record)
    fields["piece"] = bytes.fromhex(fields["piece"])
    fields["provenance"] = Provenance(fields["provenance"])
    for key in ("base_top", "guide_top", "top"):
        fields[key] = tuple(Candidate(int(t), str(s), float(p)) for t, s, p in fields.get(key, ()))
    known = set(Step.__dataclass_fields__)
    return Step(**{k: v for k, v in fields.items() if k in known})


def to_markdown(chat: Chat) -> str:
    """The chat as a Markdown document (system prompt, then each turn under a heading)."""
    lines = [f"# {chat.title or 'Chat'}", "", f"*{chat.id} · {chat.updated}*", ""]
    if chat.models:
        lines += ["Models: " + ", ".join(f"{k} `{v}`" for k, v in chat.models.items()), ""]
    if chat.system:
        lines += ["> **System:** " + chat.system.replace("\n", "\n> "), ""]
    for turn in chat.turns:
        if turn.role == "user":
            lines += ["## User", "", turn.content, ""]
            continue
        lines += ["## Assistant", "", turn.content, ""]
        if turn.summary:
            lines += [f"*{describe(turn.summary)}*", ""]
    return "\n".join(lines)


def describe(summary: dict[str, Any]) -> str:
    """One line about a reply: method, tokens, interventions, stop reason."""
    rate = 100 * float(summary.get("intervention_rate") or 0.0)
    n = summary.get("interventions", 0)
    return (
        f"{summary.get('method', '?')}: {summary.get('tokens', 0)} tokens, "
        f"{n} intervention{'' if n == 1 else 's'} ({rate:.0f}%), "
        f"guide changed {summary.get('guide_changed', 0)}, stop: {summary.get('stop_reason', '?')}"
    )
