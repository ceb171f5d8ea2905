"""The base-driven loop over full distributions (spec §2): the base writes every token; where the
method's gate opens, the guide's projected distribution is blended in (``base``, ``blendin``,
``ensemble``, ``proxy``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..decoding import Decoding
from ..steps import Provenance, Step, StopReason
from .decide import Decider, build_step, provenance_of
from .spec import MethodSpec


def base_driven_steps(gen: Decoding, spec: MethodSpec) -> Iterator[Step]:
    base = gen.pair.base
    assert base is not None
    t0 = time.perf_counter()
    gen.prefill(base, "base")
    decider = Decider(gen.pair, gen.settings, gen.conv, spec)
    gen.syncs += [x for x in (decider.guide_sync, decider.anti_sync) if x is not None]
    pieces = base.pieces()
    controls = base.control_ids()
    t_base = time.perf_counter() - t0
    for index in range(gen.settings.max_tokens):
        if gen.cancelled:
            gen.stop_reason = StopReason.CANCELLED
            return
        t1 = time.perf_counter()
        decision = decider.decide(base.logits(), gen.output.y, index)
        token = gen.sample(decision.probs, gen.rng)
        t_blend = time.perf_counter() - t1 - decision.t_guide
        if gen.end_token(base, token):
            by_guide = provenance_of(decision, token) is Provenance.BLEND_GUIDE
            gen.stop_reason = StopReason.GUIDE_EOS if by_guide else StopReason.EOS
            text = gen.output.finish()
        else:
            text = gen.push(b"" if token in controls else pieces[token], index)
        t2 = time.perf_counter()
        step = build_step(
            decider, decision, index=index, token=token, piece=pieces[token], text=text,
            base_pieces=pieces, t_base=t_base, t_blend=t_blend + time.perf_counter() - t2,
        )
        if gen.stop_reason is None and index + 1 < gen.settings.max_tokens:
            if not gen.room_left(base):
                gen.stop_reason = StopReason.CONTEXT_FULL
            else:
                t3 = time.perf_counter()
                base.eval([token])
                t_base = time.perf_counter() - t3
        yield step
