"""Nudging (Fei et al. 2024), the reference's non-blending path (spec §5).

When the base's top-1 < γ, the guide greedily writes up to 16 tokens; its words are accepted one by
one (the first always) until the base, given the text so far, either starts the next word itself
or is confident. Both models read the canonical tokenisation of their prefix + the text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from .. import blend
from ..engines.base import Requests
from ..generation.decoding import Decoding
from ..generation.driver import End, Event, Picks, drive, own_pick
from ..generation.steps import Provenance, StopReason
from ..settings import NUDGE_TOKENS
from .gate import gate_open
from .guide_side import guide_view
from .nudge_words import accept_words, nudge_picks, split_words
from .remote_nudging import remote_nudging_steps
from .spec import MethodSpec, ignoring_spec


def nudging_steps(gen: Decoding) -> Iterator[Event]:
    """Local nudging; every evaluation of the base and the guide (catch-ups, the guide's draft, the
    word checks) is a request, so many answers share batched decodes (``MethodSpec.driven``)."""
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync = yield from gen.base_text_sync_requests()
    guide = guide_view(gen)
    base_pieces = base.pieces()

    def base_top(accepted: bytes) -> Requests[tuple[float, bytes]]:
        yield from base_sync.requests(gen.output.y + accepted)
        p_next = blend.softmax(base.logits())
        top = int(p_next.argmax())
        return float(p_next[top]), base_pieces[top]

    def picks_at(index: int) -> Picks:
        t0 = time.perf_counter()
        yield from base_sync.requests(gen.output.y)
        t1 = time.perf_counter()
        b = float(blend.softmax(base.logits()).max())
        if not gate_open(b, s.gamma, None, 0, index):
            yield own_pick(gen, base, index, Provenance.BASE, t_model=t1 - t0)
            return
        # The guide nudges: draft, then accept words while the base stays unsure of them.
        t2 = time.perf_counter()
        draft, guide_ended = yield from guide.draft_requests(gen.output.y, NUDGE_TOKENS)
        words = split_words(b"".join(piece for _, piece in draft))
        accepted = yield from accept_words(words, base_top, s.gamma)
        for pick in nudge_picks(draft, accepted, index, b, t_base=t1 - t0,
                                t_guide=time.perf_counter() - t2):
            yield pick
            index += 1
        if guide_ended and len(accepted) == len(words):
            yield End(StopReason.GUIDE_EOS)
        elif not accepted:  # the guide wrote nothing usable: let the base go on
            yield from base_sync.requests(gen.output.y)
            yield own_pick(gen, base, index, Provenance.BASE, t_model=0.0)

    yield from drive(gen, picks_at, engine=base)


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
    driven=frozenset({"full"}),
    remote_steps={"full": ignoring_spec(remote_nudging_steps)},
    reads_guide_text=frozenset({"full"}),
    rank=3,
)
