"""Prompt prefixes: a model's chat template (GGUF metadata, Jinja), built-in fallbacks, or the
reference's plain ``system / Question: / Answer:`` format for base models without a template."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jinja2
import jinja2.sandbox

from .errors import UsageError

REFERENCE_SYSTEM = "Answer the question by walking through the reasoning step by step."
CHAT_SYSTEM = "You are a helpful assistant."  # the default system prompt of chat and serve


@dataclass(frozen=True)
class PlainFormat:
    """How a model without a chat template sees a conversation."""

    user_prefix: str = "Question: "
    # The reference writes "Answer: "; its trailing space forces a base's first token to start
    # without one (" Paris" becomes unreachable), so ours ends at the colon.
    assistant_prefix: str = "Answer:"

    @property
    def next_turn_stop(self) -> str:
        """Where a base that continues the pattern starts inventing the next turn."""
        return "\n" + self.user_prefix.rstrip()


QA_FORMAT = PlainFormat()
CHAT_FORMAT = PlainFormat("User: ", "Assistant:")


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Conversation:
    """A system prompt and turns; the last message is the user's, the reply is to come."""

    messages: tuple[Message, ...]
    system: str = REFERENCE_SYSTEM
    plain: PlainFormat = QA_FORMAT
    chat: bool = True  # False: the last message is raw text to continue, no template
    extra_stops: tuple[str, ...] = field(default=())

    @classmethod
    def single(cls, question: str, **kwargs: object) -> Conversation:
        return cls(messages=(Message("user", question),), **kwargs)  # type: ignore[arg-type]


def chat_conversation(messages: Sequence[Message], system: str) -> Conversation:
    """A multi-turn chat (TUI, server) whose next reply answers the last message, the user's.

    Models without a chat template see it in the plain ``User: / Assistant:`` format.
    """
    if not messages or messages[-1].role != "user":
        raise UsageError("the next reply needs a user message last")
    return Conversation(messages=tuple(messages), system=system, plain=CHAT_FORMAT, chat=True)


@dataclass(frozen=True)
class RenderedPrompt:
    text: bytes
    add_bos: bool
    templated: bool  # False: plain or raw format, the model may invent the next turn


def render_plain(conv: Conversation) -> str:
    lines = [conv.system] if conv.system else []
    fmt = conv.plain
    for m in conv.messages:
        prefix = fmt.user_prefix if m.role == "user" else fmt.assistant_prefix
        sep = "" if prefix[-1:].isspace() or m.content[:1].isspace() else " "
        lines.append(prefix + sep + m.content)
    return "\n".join(lines) + "\n" + fmt.assistant_prefix


def render_template(template: str, conv: Conversation, *, bos: str, eos: str) -> str:
    """Render a Jinja chat template the way HF/llama.cpp do, with the assistant turn opened."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    messages = [{"role": "system", "content": conv.system}] if conv.system else []
    messages += [{"role": m.role, "content": m.content} for m in conv.messages]
    return env.from_string(template).render(
        messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=True
    )


def _chatml(msgs: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in msgs)
    return body + "<|im_start|>assistant\n"


def _llama3(msgs: Sequence[tuple[str, str]]) -> str:
    body = "".join(
        f"<|start_header_id|>{r}<|end_header_id|>\n\n{c}<|eot_id|>" for r, c in msgs
    )
    return "<|begin_of_text|>" + body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _gemma(msgs: Sequence[tuple[str, str]]) -> str:
    out, pending_system = "", ""
    for r, c in msgs:
        if r == "system":
            pending_system = c + "\n\n"
            continue
        role = "model" if r == "assistant" else "user"
        out += f"<start_of_turn>{role}\n{pending_system}{c}<end_of_turn>\n"
        pending_system = ""
    return "<bos>" + out + "<start_of_turn>model\n"


def _llama2(msgs: Sequence[tuple[str, str]]) -> str:
    out, system = "", ""
    for r, c in msgs:
        if r == "system":
            system = f"<<SYS>>\n{c}\n<</SYS>>\n\n"
        elif r == "user":
            out += f"<s>[INST] {system}{c} [/INST]"
            system = ""
        else:
            out += f" {c} </s>"
    return out


def _olmo(msgs: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<|{r}|>\n{c}\n" for r, c in msgs)
    return "<|endoftext|>" + body + "<|assistant|>\n"


# Built-in templates by name (--guide-template / --base-template for a model on a server).
TEMPLATES: dict[str, Callable[[Sequence[tuple[str, str]]], str]] = {
    "chatml": _chatml, "llama3": _llama3, "gemma": _gemma, "llama2": _llama2, "olmo": _olmo,
}

# Marker token → fallback renderer, tried in order when a template is missing or fails to render.
FALLBACKS: dict[str, Callable[[Sequence[tuple[str, str]]], str]] = {
    "<|im_start|>": _chatml,
    "<|start_header_id|>": _llama3,
    "<start_of_turn>": _gemma,
    "[INST]": _llama2,
    "<|assistant|>": _olmo,
}


def render(
    conv: Conversation,
    *,
    chat_template: str | None,
    bos: str,
    eos: str,
    vocab_markers: frozenset[str] = frozenset(),
    use_template: bool = True,
) -> RenderedPrompt:
    """The prompt prefix for one model.

    ``use_template=False`` forces the plain format (how the reference treats base models).
    ``vocab_markers``: control-token texts of the model, to pick a built-in fallback template.
    """
    if not conv.chat:
        return RenderedPrompt(conv.messages[-1].content.encode(), add_bos=True, templated=False)
    if use_template and chat_template:
        try:
            text = render_template(chat_template, conv, bos=bos, eos=eos)
            return _templated(text, bos)
        except jinja2.TemplateError:
            pass
    if use_template:
        msgs = [("system", conv.system)] if conv.system else []
        msgs += [(m.role, m.content) for m in conv.messages]
        for marker, fallback in FALLBACKS.items():
            if marker in vocab_markers:
                return _templated(fallback(msgs), bos)
    return RenderedPrompt(render_plain(conv).encode(), add_bos=True, templated=False)


def _templated(text: str, bos: str) -> RenderedPrompt:
    # A template that writes BOS itself must not get a second one from the tokenizer.
    if bos and text.startswith(bos):
        return RenderedPrompt(text.encode(), add_bos=False, templated=True)
    return RenderedPrompt(text.encode(), add_bos=True, templated=True)
