"""The models a generation runs on, and how each one sees the conversation."""

from __future__ import annotations

from dataclasses import dataclass

from .engines import server_of
from .engines.base import Engine
from .engines.remote.prompts import remote_prompt
from .projection import Projection
from .prompts import Conversation, RenderedPrompt, render


@dataclass
class ModelPair:
    """A base, a guide, and for proxy-tuning the guide's untuned counterpart (``anti``).

    ``projection`` maps guide ids onto the base vocabulary (identity for a shared tokenizer).
    """

    base: Engine | None
    guide: Engine | None = None
    anti: Engine | None = None
    projection: Projection | None = None


def special_text(engine: Engine, token: int | None) -> str:
    if token is None or token < 0:
        return ""
    return engine.pieces()[token].decode("utf-8", errors="replace")


def control_markers(engine: Engine) -> frozenset[str]:
    pieces = engine.pieces()
    return frozenset(pieces[i].decode("utf-8", errors="replace") for i in engine.control_ids())


def prompt_for(engine: Engine, conv: Conversation, *, role: str) -> RenderedPrompt:
    """The prefix ``engine`` conditions on.

    The base uses its own chat template if it has one, else the reference's plain format; the
    guide (and anti-expert) use their template, or a built-in one picked by their control tokens.
    """
    is_base = role == "base"
    if not engine.capabilities.vocabulary:  # no template to read: the server or an option says
        return remote_prompt(server_of(engine), conv)
    rendered = render(
        conv,
        chat_template=engine.chat_template,
        bos=special_text(engine, engine.bos_id),
        eos=special_text(engine, engine.eos_id),
        vocab_markers=frozenset() if is_base else control_markers(engine),
        use_template=bool(engine.chat_template) or not is_base,
    )
    return RenderedPrompt(rendered.text, rendered.add_bos and engine.add_bos, rendered.templated)
