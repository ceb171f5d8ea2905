"""Request bodies of the OpenAI-compatible API, and how they become a ``Conversation`` and
validated ``GenerationSettings`` (the library's validation, messages naming the field)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ..prompts import Conversation, Message, chat_conversation
from ..settings import GenerationSettings, parse_alpha


class TextPart(BaseModel):
    """One part of a multi-part message; only text is understood."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class Common(BaseModel):
    """Fields shared by chat and text completions, BlendIn's own knobs included. Unknown fields
    are ignored, as OpenAI-compatible servers do (clients send vendor extras)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="only n = 1 is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # BlendIn's extension fields (the CLI's --gamma, --alpha, --method, --support, --cap).
    gamma: float | None = Field(None, ge=0.0, le=1.0)
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
    max_completion_tokens: int | None = Field(None, ge=1)
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
    max_tokens = (getattr(req, "max_completion_tokens", None) or req.max_tokens
                  or min(defaults.max_tokens, max_tokens_limit))
    if max_tokens > max_tokens_limit:
        raise UsageError(f"max_tokens must be <= {max_tokens_limit} on this server, got {max_tokens}")
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


def api_message(message: str) -> str:
    """A library message names CLI flags (``--max-tokens``); the API's fields are ``max_tokens``."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), message)


def param_of(message: str) -> str | None:
    """The field a library message names first, if any."""
    found = re.search(r"--([a-z][a-z-]*)", message)
    return found[1].replace("-", "_") if found else None
