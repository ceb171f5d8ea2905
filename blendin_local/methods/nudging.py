"""Nudging (Fei et al. 2024), the reference's non-blending path (spec §5).

When the base's top-1 < γ, the guide greedily writes up to 16 tokens; its words are accepted one by
one (the first always) until the base, given the text so far, either starts the next word itself
or is confident. Both models read the canonical tokenisation of their prefix + the text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from .. import blend
from ..generation.decoding import Decoding
from ..generation.steps import Provenance, Step
from ..settings import NUDGE_TOKENS
from .guide_side import guide_view
from .nudge_words import NudgeSteps, accept_words, split_words
from .remote_nudging import remote_nudging_steps
from .spec import MethodSpec, ignoring_spec


def nudging_steps(gen: Decoding) -> Iterator[Step]:
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync = gen.base_text_sync()
    guide = guide_view(gen)
    base_pieces = base.pieces()

    def base_top(accepted: bytes) -> tuple[float, bytes]:
        base_sync.update(gen.output.y + accepted)
        p_next = blend.softmax(base.logits())
        top = int(p_next.argmax())
        return float(p_next[top]), base_pieces[top]

    index = 0
    while index < s.max_tokens:
        if gen.halted(base):
            return
        t0 = time.perf_counter()
        base_sync.update(gen.output.y)
        t1 = time.perf_counter()
        b = float(blend.softmax(base.logits()).max())
        if b >= s.gamma:
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=t1 - t0)
            index += 1
            if gen.stop_reason is not None:
                return
            continue
        # The guide nudges: draft, then accept words while the base stays unsure of them.
        t2 = time.perf_counter()
        draft, guide_ended = guide.draft(gen.output.y, NUDGE_TOKENS)
        words = split_words(b"".join(piece for _, piece in draft))
        accepted = accept_words(words, base_top, s.gamma)
        nudge = NudgeSteps(gen, b, t_base=t1 - t0, t_guide=time.perf_counter() - t2)
        for step in nudge.steps(draft, accepted, index):
            yield step
            index += 1
        if nudge.finished(guide_ended and len(accepted) == len(words)):
            return
        if not accepted:  # the guide wrote nothing usable: let the base go on
            base_sync.update(gen.output.y)
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=0.0)
            index += 1


SPEC = MethodSpec(
    name="nudging",
    help="Nudging: where the base is unsure, the guide writes words until the base takes over.",
    roles=frozenset({"base", "guide"}),
    drives="base",
    colour="#2ca02c",
    knobs=frozenset({"gamma"}),
    gate="gamma",
    events=True,
    rate_note="the intervention rate counts guide calls per token.",
    steps={"full": ignoring_spec(nudging_steps)},
    remote_steps={"full": ignoring_spec(remote_nudging_steps)},
    reads_guide_text=frozenset({"full"}),
    rank=3,
)
