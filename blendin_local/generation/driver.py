"""The token-by-token loop skeleton, once: prompt, then per token choose → stop checks → text →
step record → evaluate the token. A method only says how it *chooses* a token (:class:`Choice`).

Nothing here calls ``engine.eval``: the loop yields :class:`~blendin_local.engines.base.Eval`
requests, and whoever drives it runs them — at once for one answer (``generate.Generation``), or
gathered across many answers into one batched decode (``many.GenerationBatch``). So the same step
source serves one answer and many, with the same tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..engines.base import Engine, Eval, Requests
from .decoding import Decoding
from .steps import Provenance, Step, StopReason

Event = Step | Eval  # what a step source yields


@dataclass(frozen=True)
class Choice:
    """A method's chosen next token.

    Attributes:
        token: the id, in the driving model's vocabulary.
        describe: builds the step record from the text to show and the driving model's seconds
            for this position.
        by_guide: an end-of-generation token chosen here was the guide's doing (stop reason
            ``guide-eos`` rather than ``eos``).
    """

    token: int
    describe: Callable[[str, float], Step]
    by_guide: bool = False


Chooser = Callable[[int], Requests[Choice]]  # index -> (requests for other models) -> Choice


def token_steps(gen: Decoding, engine: Engine, role: str, choose: Chooser) -> Iterator[Event]:
    """The answer of ``engine`` (the driving model, in ``role``), one token per step.

    Owns what every token-by-token method shares: the prompt, cancel, end-of-generation tokens,
    stop strings (``gen.push``), the token limit, a full context, and the driving model's time.
    """
    t0 = time.perf_counter()
    yield from gen.prefill_requests(engine, role)
    t_model = time.perf_counter() - t0
    limit = gen.settings.max_tokens
    for index in range(limit):
        if gen.cancelled:
            gen.stop_reason = StopReason.CANCELLED
            return
        choice = yield from choose(index)
        token = choice.token
        text = gen.take(engine, token, index, by_guide=choice.by_guide)
        step = choice.describe(text, t_model)
        if gen.stop_reason is None and index + 1 < limit:
            if not gen.room_left(engine):
                gen.stop_reason = StopReason.CONTEXT_FULL
            else:
                request = Eval(engine, [token])
                yield request
                t_model = request.seconds
        yield step


def own_chooser(gen: Decoding, engine: Engine, provenance: Provenance) -> Chooser:
    """Choose from ``engine``'s own distribution (the ``guide`` baseline)."""

    def choose(index: int) -> Requests[Choice]:
        t0 = time.perf_counter()
        token, describe = gen.own_choice(engine, index, provenance)
        t_choose = time.perf_counter() - t0
        return Choice(token, lambda text, t_model: describe(text, t_model, t_choose))
        yield  # a generator that makes no requests

    return choose
