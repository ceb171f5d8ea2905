"""``guide``: the guide model alone, with its own prompt and its own stop (the aligned baseline)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..decoding import Decoding
from ..steps import Provenance, Step
from .remote_steps import remote_guide_steps
from .spec import MethodSpec, ignoring_spec


def solo_steps(gen: Decoding) -> Iterator[Step]:
    """The guide writes every token from its own distribution."""
    engine = gen.pair.guide
    assert engine is not None
    t0 = time.perf_counter()
    gen.prefill(engine, "guide")
    t_model = time.perf_counter() - t0
    for index in range(gen.settings.max_tokens):
        step = gen.own_step(engine, index, provenance=Provenance.GUIDE, t_model=t_model)
        yield step
        if index + 1 == gen.settings.max_tokens or gen.halted(engine):
            return
        t1 = time.perf_counter()
        engine.eval([step.token])
        t_model = time.perf_counter() - t1


SPEC = MethodSpec(
    name="guide",
    help="The guide model alone.",
    roles=frozenset({"guide"}),
    drives="guide",
    colour="#d9a400",
    steps={"full": ignoring_spec(solo_steps)},
    remote_steps={"full": ignoring_spec(remote_guide_steps)},
    rank=2,
)
