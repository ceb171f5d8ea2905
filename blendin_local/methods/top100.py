"""``--support top100``: the paper-compatible blend over the two models' top-100 *strings* (spec §3).

Each model's top-100 tokens are decoded (UTF-8, errors ignored, as the reference's servers do); a
string seen twice keeps the probability of its later, lower-ranked token. Both models then read the
canonical tokenisation of their prefix + the text, re-tokenised incrementally. The loop is
:func:`driver.drive`; this module only decides, and its local models' evaluations are requests, so
many answers share batched decodes (``MethodSpec.driven``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from .. import blend
from ..engines.base import decoded_strings
from ..generation.decoding import Decoding
from ..generation.driver import Event, Pick, Picks, drive, own_pick
from ..generation.steps import Provenance, Step
from .gate import gate_open
from .guide_side import guide_view
from .strings import StringBlend, string_distribution, string_intervention


def sampled(gen: Decoding) -> Callable[[dict[str, float]], str]:
    """Choose a string of a blend with the run's sampler and random generator."""

    def choose(mixed: dict[str, float]) -> str:
        keys = list(mixed)
        return keys[gen.sample(np.fromiter(mixed.values(), dtype=np.float64), gen.rng)]

    return choose


def string_pick(sb: StringBlend, describe: Callable[[str, float], Step]) -> Pick:
    """The pick of an intervention's chosen string. An empty string (a control token or a partial
    byte) ends the answer: ``guide-eos`` unless the base's own top string was empty too."""
    return Pick(describe, piece=sb.chosen.encode(), by_guide=sb.base_top != "", ends=not sb.chosen)


def top100_steps(gen: Decoding) -> Iterator[Event]:
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync = yield from gen.base_text_sync_requests()
    guide = guide_view(gen)
    base_strings = decoded_strings(base.pieces(), base.control_ids())
    interventions = 0

    def picks_at(index: int) -> Picks:
        nonlocal interventions
        t0 = time.perf_counter()
        yield from base_sync.requests(gen.output.y)
        t1 = time.perf_counter()
        p_base = blend.softmax(base.logits())
        b = float(p_base.max())
        if not gate_open(b, s.gamma, s.cap, interventions, index):
            yield own_pick(gen, base, index, Provenance.BASE, t_model=t1 - t0)
            return
        interventions += 1
        t2 = time.perf_counter()
        gd, g = yield from guide.strings_requests(gen.output.y)
        t3 = time.perf_counter()
        sb = string_intervention(string_distribution(p_base, base_strings), gd, b, g, s.alpha,
                                 sampled(gen))

        def describe(text: str, _: float) -> Step:
            return Step(index=index, token=-1, piece=sb.chosen.encode(), text=text,
                        provenance=sb.provenance, intervened=True, b=b, g=g, alpha=sb.alpha,
                        p_base_token=None, t_base=t1 - t0, t_guide=t3 - t2,
                        t_blend=(t2 - t1) + (time.perf_counter() - t3))

        yield string_pick(sb, describe)

    yield from drive(gen, picks_at, engine=base)
