"""Request bodies of the OpenAI-compatible API, and how they become a ``Conversation`` and
validated ``GenerationSettings`` (the library's validation, messages naming the field)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ..limits import check
from ..prompts import Conversation, Message, chat_conversation
from ..settings import GenerationSettings, parse_alpha


class Strict(BaseModel):
    """JSON types as written: ``"4"`` or ``true`` is no integer, ``4.5`` no integer either (a
    number field takes an integer). Unknown fields are ignored, as OpenAI-compatible servers do
    (clients send vendor extras)."""

    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(Strict):
    """One part of a multi-part message; only text is understood."""

    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(Strict):
    include_usage: bool = False


class Common(Strict):
    """Fields shared by chat and text completions, BlendIn's own knobs included. The decoding
    values' ranges are the library's (:mod:`limits`), checked when the settings are built."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="only n = 1 is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # BlendIn's extension fields (the CLI's --gamma, --alpha, --method, --support, --cap).
    gamma: float | None = None
    alpha: float | Literal["auto"] | None = None
    method: str | None = None
    support: Literal["full", "top100"] | None = None
    cap: float | None = None

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @property
    def n_top(self) -> int | None:
        """Top candidates per token to return, or None when no logprobs are asked for."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Common):
    prompt: str = Field(min_length=1)
    logprobs: int | None = Field(None, ge=0, le=5)

    @property
    def n_top(self) -> int | None:
        return self.logprobs


def chat_to_conversation(req: ChatRequest, default_system: str) -> Conversation:
    """System (and developer) messages become the system prompt, the rest the turns."""
    system = [m.text for m in req.messages if m.role in ("system", "developer")]
    turns = [Message(m.role, m.text) for m in req.messages if m.role in ("user", "assistant")]
    return chat_conversation(turns, "\n".join(system) if system else default_system)


def prompt_chars(conv: Conversation) -> int:
    return len(conv.system) + sum(len(m.content) for m in conv.messages)


def completion_to_conversation(req: CompletionRequest) -> Conversation:
    """A text completion continues the raw prompt (``generate --no-chat``)."""
    return Conversation.single(req.prompt, chat=False)


def request_settings(
    req: ChatRequest | CompletionRequest, defaults: GenerationSettings, *, method: str,
    max_tokens_limit: int,
) -> GenerationSettings:
    """The server's defaults overridden by the request's fields; raises UsageError naming the
    field (the library validates the values, as it does the CLI's)."""
    max_tokens = _max_tokens(req, defaults.max_tokens, max_tokens_limit)
    sampling = defaults.sampling
    for name in ("temperature", "top_p", "seed"):
        value = getattr(req, name)
        if value is not None:
            sampling = replace(sampling, **{name: value})
    changes: dict[str, object] = {
        "method": method, "max_tokens": max_tokens, "sampling": sampling,
        "stop": defaults.stop + req.stops, "final_top": req.n_top or 0,
    }
    for name in ("gamma", "support", "cap"):
        if getattr(req, name) is not None:
            changes[name] = getattr(req, name)
    if req.alpha is not None:
        changes["alpha"] = parse_alpha(req.alpha)
    return replace(defaults, **changes)  # type: ignore[arg-type]


def _max_tokens(req: ChatRequest | CompletionRequest, default: int, limit: int) -> int:
    """``max_completion_tokens``, else ``max_tokens``, else the server's default; checked against the
    library's limits, then this server's ``limit``."""
    asked = getattr(req, "max_completion_tokens", None)
    if asked is None:
        asked = req.max_tokens
    if asked is None:
        return min(default, limit)
    check("max_tokens", asked)
    if asked > limit:
        raise UsageError(f"--max-tokens must be <= {limit} on this server, got {asked}")
    return asked


def api_message(message: str) -> str:
    """A library message names CLI flags (``--max-tokens``); the API's fields are ``max_tokens``."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), message)


def param_of(message: str) -> str | None:
    """The field a library message names first, if any."""
    found = re.search(r"--([a-z][a-z-]*)", message)
    return found[1].replace("-", "_") if found else None
