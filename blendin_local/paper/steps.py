"""``--compat paper`` over two servers: the reference's loop, one step at a time (see :mod:`paper`).

Every step sends the base server exactly what the reference sends (``max_tokens=1``,
``temperature=0.0``, ``logprobs=100``, ``top_p=0.9``; the prompt is the whole prefix + answer text),
and the guide server the same without ``top_p`` when the base is unsure. :func:`paper_step` is one
step at a given answer text, so the same function serves free-running generation and teacher-forced
comparison with the reference's recorded answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..engines import server_of, servers
from ..engines.remote.engine import HEAD_CHARS, RemoteError, RemoteModel
from ..engines.remote.shapes import parse_positions
from ..errors import UsageError
from ..generation.driver import Event, Pick, Picks, drive
from ..generation.steps import Provenance, Step
from .reference import (
    PAPER_ANSWER_PREFIX,
    PAPER_BASE_TOP_P,
    PAPER_LOGPROBS,
    PAPER_QUESTION_PREFIX,
    PaperDecision,
    PaperReply,
    decide,
    paper_prefix,
)

if TYPE_CHECKING:
    from ..generation.decoding import Decoding
    from ..pair import ModelPair
    from ..prompts import Conversation
    from ..settings import GenerationSettings


@dataclass(frozen=True)
class PaperSetup:
    """The two servers and what each is prompted with before the answer."""

    base: RemoteModel
    guide: RemoteModel
    base_prefix: str
    guide_prefix: str
    gamma: float
    alpha: float | None


def paper_setup(pair: ModelPair, conv: Conversation, settings: GenerationSettings) -> PaperSetup:
    """Check that the pair and the conversation fit the reference's set-up (one clear error if not)."""
    base, guide = pair.base, pair.guide
    if len(servers(base, guide)) != 2:
        raise UsageError("--compat paper talks to two servers, as the reference does: give "
                         "--base URL#MODEL and --guide URL#MODEL (OpenAI-compatible servers)")
    return servers_setup(server_of(base), server_of(guide), conv, settings)


def servers_setup(base: RemoteModel, guide: RemoteModel, conv: Conversation,
                  settings: GenerationSettings) -> PaperSetup:
    """The prompts each server gets for ``conv`` (one question) in the reference's layout."""
    if len(conv.messages) != 1 or conv.messages[0].role != "user":
        raise UsageError("--compat paper answers one question (generate, eval), not a conversation")
    question = conv.messages[0].content
    if conv.chat:
        instruction = PAPER_QUESTION_PREFIX + question
        base_prefix = paper_prefix(base.spec.model, conv.system, instruction, PAPER_ANSWER_PREFIX)
        guide_prefix = paper_prefix(guide.spec.model, conv.system, instruction, PAPER_ANSWER_PREFIX)
    else:  # --no-chat: both continue the raw text
        base_prefix = guide_prefix = question
    return PaperSetup(base, guide, base_prefix, guide_prefix, settings.gamma, settings.alpha)


def ask(model: RemoteModel, prompt: str, *, top_p: float | None = None) -> PaperReply:
    """One one-token request with the top-100 logprobs, as the reference sends it."""
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                            "logprobs": PAPER_LOGPROBS}
    if top_p is not None:
        body["top_p"] = top_p
    data = model.complete_json(body)
    try:
        choices = data["choices"] if isinstance(data, dict) else None
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
            raise ValueError("no choices[0] object")
        choice = choices[0]
        positions = parse_positions(choice)
    except ValueError as exc:
        raise RemoteError(f"{model.spec.url} sent logprobs that are not OpenAI's shape: {exc}") from None
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    if not positions:
        if choice.get("text"):
            raise RemoteError(f"the server at {model.spec.url} returned no logprobs (it must "
                              "support the completions API's logprobs)")
        if finish is None:  # no token and no reason: not the end of the text, a broken answer
            raise RemoteError(f"{model.spec.url} answered with no token and no finish_reason: "
                              f"{json.dumps(data)[:HEAD_CHARS]!r}")
        return PaperReply(token=None, top={}, finish_reason=finish)
    first = positions[0]
    return PaperReply(token=first.text, top=first.top, finish_reason=finish)


def paper_step(setup: PaperSetup, y: str) -> tuple[PaperDecision, float, float]:
    """The reference's decision after answer text ``y``: (decision, seconds waiting on the base,
    seconds waiting on the guide)."""
    t0 = time.perf_counter()
    base_reply = ask(setup.base, setup.base_prefix + y, top_p=PAPER_BASE_TOP_P)
    t_base = time.perf_counter() - t0
    t_guide = 0.0

    def ask_guide() -> PaperReply:
        nonlocal t_guide
        t1 = time.perf_counter()
        reply = ask(setup.guide, setup.guide_prefix + y)
        t_guide = time.perf_counter() - t1
        return reply

    return decide(base_reply, ask_guide, setup.gamma, setup.alpha), t_base, t_guide


def paper_steps(gen: Decoding) -> Iterator[Event]:
    """Free-running generation: append each step's chosen string and ask again."""
    setup = paper_setup(gen.pair, gen.conv, gen.settings)
    y = ""  # the answer exactly as the reference re-sends it (the servers' strings, joined)

    def picks_at(index: int) -> Picks:
        nonlocal y
        t0 = time.perf_counter()
        d, t_base, t_guide = paper_step(setup, y)
        y += d.chosen
        provenance = Provenance.BASE
        if d.intervened:
            provenance = Provenance.BLEND_AGREE if d.chosen == d.base_top else Provenance.BLEND_GUIDE

        def describe(text: str, _: float) -> Step:
            return Step(
                index=index, token=-1, piece=d.chosen.encode(), text=text, provenance=provenance,
                intervened=d.intervened, b=d.b, g=d.g, alpha=d.alpha, t_base=t_base,
                t_guide=t_guide, t_blend=time.perf_counter() - t0 - t_base - t_guide,
            )

        # the base server's finish ends the answer after this string (guide-eos: the guide's "")
        yield Pick(describe, piece=d.chosen.encode(), ends=d.stop,
                   by_guide=d.intervened and not d.chosen)

    yield from drive(gen, picks_at)
