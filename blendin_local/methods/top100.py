"""``--support top100``: the paper-compatible blend over the two models' top-100 *strings* (spec §3).

Each model's top-100 tokens are decoded (UTF-8, errors ignored, as the reference's servers do); a
string seen twice keeps the probability of its later, lower-ranked token. Both models then read the
canonical tokenisation of their prefix + the text, re-tokenised incrementally.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from .. import blend
from ..engines.base import decoded_strings
from ..generation.decoding import Decoding
from ..generation.steps import Provenance, Step, StopReason
from ..settings import CAP_WARMUP
from .guide_side import guide_view
from .strings import blend_string_distributions, string_distribution


def choose_string(gen: Decoding, mixed: dict[str, float], b_top: str, index: int
                  ) -> tuple[bytes, str, Provenance]:
    """Sample a string of the blend and add it to the answer: (its bytes, the text to show now,
    provenance). An empty string (a control token or partial byte) ends the answer."""
    keys = list(mixed)
    choice = keys[gen.sample(np.fromiter(mixed.values(), dtype=np.float64), gen.rng)]
    piece = choice.encode()
    if not piece:
        gen.stop_reason = StopReason.EOS if b_top == "" else StopReason.GUIDE_EOS
        text = gen.output.finish()
    else:
        text = gen.push(piece, index)
    return piece, text, Provenance.BLEND_AGREE if choice == b_top else Provenance.BLEND_GUIDE


def top100_steps(gen: Decoding) -> Iterator[Step]:
    base = gen.pair.base
    assert base is not None
    s = gen.settings
    base_sync = gen.base_text_sync()
    guide = guide_view(gen)
    base_pieces = base.pieces()
    base_strings = decoded_strings(base_pieces, base.control_ids())
    interventions = 0
    for index in range(s.max_tokens):
        if gen.halted(base):
            return
        t0 = time.perf_counter()
        base_sync.update(gen.output.y)
        t1 = time.perf_counter()
        p_base = blend.softmax(base.logits())
        b = float(p_base.max())
        capped = s.cap is not None and index >= CAP_WARMUP and interventions / index >= s.cap
        if b >= s.gamma or capped:
            yield gen.own_step(base, index, provenance=Provenance.BASE, t_model=t1 - t0)
            continue
        interventions += 1
        t2 = time.perf_counter()
        gd, g = guide.strings(gen.output.y)
        t3 = time.perf_counter()
        bd = string_distribution(p_base, base_strings)
        mixed, alpha, b_top, _ = blend_string_distributions(bd, gd, b, g, s.alpha)
        piece, text, provenance = choose_string(gen, mixed, b_top, index)
        yield Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                   intervened=True, b=b, g=g, alpha=alpha,
                   p_base_token=None, t_base=t1 - t0, t_guide=t3 - t2,
                   t_blend=(t2 - t1) + (time.perf_counter() - t3))
