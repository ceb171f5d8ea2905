"""``--compat paper``: the reference implementation's decisions, reproduced (spec §1–§3, §10).

The reference (DecayingSeart/BlendIn, ``utils.py: completion_with_nudging`` with distribution
blending) asks the base server for one token with its top-100 logprobs at every step, re-sending the
prompt and the whole answer so far as text. When the top-1 probability ``b`` of that ``{string:
logprob}`` dict is below γ it asks the guide server the same way, blends the two dicts as strings and
appends the greedy string; otherwise it appends the token the base server itself chose. It stops when
the base server's ``finish_reason`` is ``"stop"``.

This module is the pure part: prompt layout, the one-step decision from the two replies, α, the
blend and the greedy choice. No I/O; :mod:`.steps` sends the requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import blend
from ..methods.strings import blend_strings, string_intervention, top_string

# The reference's defaults (completion_with_nudging's keyword defaults).
PAPER_SYSTEM = "Answer the question by walking through the reasoning step by step."
PAPER_QUESTION_PREFIX = "Question: "
PAPER_ANSWER_PREFIX = "Answer: "  # with the trailing space
PAPER_LOGPROBS = 100
PAPER_BASE_TOP_P = 0.9  # sent to the base only (run_api.py --base_top_p default)
BLEND_EPSILON = 1e-10  # the blend returns log(p + 1e-10)
KNOWLEDGE_CUT = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


# --- prompt layout ---------------------------------------------------------------------------------
def _template_kind(model_name: str) -> str:
    """Which of the reference's templates a model gets, from substrings of its lower-cased name
    (checked in the reference's order; e.g. any name holding "gemma" and "it" is a Gemma chat model)."""
    name = model_name.lower()
    if "chat" in name and "llama" in name and "2" in name:
        return "llama-2-chat"
    if "instruct" in name and "llama" in name and "3" in name:
        return "llama-3.1-instruct" if "3.1" in name else "llama-3-instruct"
    if "it" in name and "gemma" in name:
        return "gemma-it"
    if "instruct" in name and "olmo" in name:
        return "olmo-instruct"
    return "plain"


def paper_prefix(model_name: str, system: str, instruction: str, response: str) -> str:
    """The text a model is prompted with, before the answer: the reference's layout for
    ``model_name`` (the served model's name), with ``instruction`` = question prefix + question and
    ``response`` = the answer prefix. No BOS text: the servers add it."""
    kind = _template_kind(model_name)
    if kind == "llama-2-chat":
        return f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{instruction} [/INST] {response.lstrip()}"
    if kind.startswith("llama-3"):
        if kind == "llama-3.1-instruct":
            system = KNOWLEDGE_CUT + system
        return (f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
                f"<|start_header_id|>user<|end_header_id|>\n\n{instruction}<|eot_id|>"
                f"<|start_header_id|>assistant<|end_header_id|>\n\n{response}")
    if kind == "gemma-it":
        return f"<start_of_turn>user\n{system}\n{instruction}<end_of_turn>\n<start_of_turn>model\n{response}"
    if kind == "olmo-instruct":
        return f"<|endoftext|><|user|>\n{system}\n{instruction}\n<|assistant|>\n{response}"
    return f"{system}\n{instruction}\n{response}"


# --- one step ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperReply:
    """What a one-token completions request returned: the token the server chose, its top
    ``{string: logprob}`` dict as JSON parsing leaves it (a string listed twice keeps its later
    value, at its first place), and ``finish_reason``. ``token`` is None when the server returned no
    token (it ended the text at once)."""

    token: str | None
    top: dict[str, float]
    finish_reason: str | None


@dataclass(frozen=True)
class PaperDecision:
    """What the reference does at one step.

    ``tie``: the greedy maximum of the blend was shared by several strings. The reference takes the
    first in the iteration order of a Python ``set`` of strings, which changes with PYTHONHASHSEED;
    we take the first in a fixed order (the base's strings as listed, then the guide's new ones).
    """

    chosen: str
    intervened: bool
    b: float
    g: float | None = None
    alpha: float | None = None
    base_top: str = ""  # the base dict's top string (first maximum in listed order)
    guide_top: str | None = None
    tie: bool = False
    stop: bool = False  # the base server's finish_reason was "stop": the answer ends after this step


def probabilities(top: dict[str, float]) -> dict[str, float]:
    """``{string: exp(logprob)}`` in float64, as the reference computes them (``np.exp``)."""
    return {s: float(np.exp(lp)) for s, lp in top.items()}


def paper_alpha(base: dict[str, float], guide: dict[str, float]) -> float:
    """Auto α from two probability dicts: g / (b + g) plus 0.1 × the base's probability of the
    guide's top string — no clip before that bonus — then clipped to [0, 1] (``blend.auto_alpha``)."""
    return blend.auto_alpha(max(base.values()), max(guide.values()), base.get(top_string(guide), 0.0))


def paper_logs(mixed: dict[str, float]) -> dict[str, float]:
    """``log(p + 1e-10)`` of a blend, as the reference's blend returns it."""
    return {s: float(np.log(v + BLEND_EPSILON)) for s, v in mixed.items()}


def paper_blend(base: dict[str, float], guide: dict[str, float], alpha: float) -> dict[str, float]:
    """``log(p + 1e-10)`` of ``alpha·guide + (1-alpha)·base`` over the union of strings (missing
    = 0), renormalised; strings ordered base first, then the guide's new ones."""
    return paper_logs(blend_strings(base, guide, alpha))


def greedy(logprobs: dict[str, float]) -> tuple[str, bool]:
    """The first string with the largest value, and whether another string shares that value."""
    best = top_string(logprobs)
    top = logprobs[best]
    return best, sum(1 for v in logprobs.values() if v == top) > 1


def paper_choice(mixed: dict[str, float]) -> str:
    """The reference's greedy choice from a blend: the first maximum of its ``log(p + 1e-10)``
    (two probabilities that differ only below that precision tie there, as in the reference)."""
    return greedy(paper_logs(mixed))[0]


def decide(base: PaperReply, ask_guide: Callable[[], PaperReply], gamma: float,
           alpha: float | None) -> PaperDecision:
    """One step of the reference's loop from the base's reply; ``ask_guide`` is called only when
    the base is unsure (b < γ). ``alpha`` None is auto α."""
    stop = base.finish_reason == "stop"
    bp = probabilities(base.top)
    if not bp:  # no token came back (the server ended the text at once)
        return PaperDecision(chosen="", intervened=False, b=0.0, stop=True)
    b = max(bp.values())
    base_top = top_string(bp)
    if not b < gamma:
        # Confident: the token the server itself chose, which need not be the dict's top string
        chosen = base.token if base.token is not None else ""
        return PaperDecision(chosen=chosen, intervened=False, b=b, base_top=base_top, stop=stop)
    gp = probabilities(ask_guide().top)
    if not gp:
        # The guide ended the text at once (its end-of-turn first): the reference fails here (no
        # tokens[0]); we end the answer, appending nothing.
        return PaperDecision(chosen="", intervened=True, b=b, base_top=base_top, stop=True)
    sb = string_intervention(bp, gp, b, max(gp.values()), alpha, paper_choice)
    tie = greedy(paper_logs(sb.mixed))[1]
    return PaperDecision(chosen=sb.chosen, intervened=True, b=b, g=max(gp.values()), alpha=sb.alpha,
                         base_top=sb.base_top, guide_top=sb.guide_top, tie=tie, stop=stop)
