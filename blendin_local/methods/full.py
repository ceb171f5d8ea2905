"""The base-driven loop over full distributions (spec §2): the base writes every token; where the
method's gate opens, the guide's projected distribution is blended in (``base``, ``blendin``,
``ensemble``, ``proxy``). The loop is :func:`driver.drive`; this module only decides."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..generation.decoding import Decoding
from ..generation.driver import Event, Pick, Picks, drive
from ..generation.steps import Provenance, Step
from .decide import Decider, build_step, provenance_of
from .spec import MethodSpec


def base_driven_steps(gen: Decoding, spec: MethodSpec) -> Iterator[Event]:
    base = gen.pair.base
    assert base is not None
    decider = Decider(gen.pair, gen.settings, gen.conv, spec)
    gen.syncs += [x for x in (decider.guide_sync, decider.anti_sync) if x is not None]
    pieces = base.pieces()

    def picks_at(index: int) -> Picks:
        t1 = time.perf_counter()
        decision = yield from decider.decide_requests(base.logits(), gen.output.y, index)
        token = gen.sample(decision.probs, gen.rng)
        t_blend = time.perf_counter() - t1 - decision.t_guide - decision.t_waited

        def describe(text: str, t_base: float) -> Step:
            t2 = time.perf_counter()
            return build_step(
                decider, decision, index=index, token=token, piece=pieces[token], text=text,
                base_pieces=pieces, t_base=t_base, t_blend=t_blend + time.perf_counter() - t2,
            )

        by_guide = provenance_of(decision, token) is Provenance.BLEND_GUIDE
        yield Pick(describe, token=token, by_guide=by_guide)

    return drive(gen, picks_at, engine=base, evaluate_as="base",
                 beside=lambda: decider.beside(gen.output.y))
