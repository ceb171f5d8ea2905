"""``guide``: the guide model alone, with its own prompt and its own stop (the aligned baseline)."""

from __future__ import annotations

from collections.abc import Iterator

from ..generation.decoding import Decoding
from ..generation.driver import Event, drive, own_picks
from ..generation.steps import Provenance
from .remote_steps import remote_guide_steps
from .spec import MethodSpec, ignoring_spec


def solo_steps(gen: Decoding) -> Iterator[Event]:
    """The guide writes every token from its own distribution."""
    engine = gen.pair.guide
    assert engine is not None
    return drive(gen, own_picks(gen, engine, Provenance.GUIDE), engine=engine, evaluate_as="guide")


SPEC = MethodSpec(
    name="guide",
    help="The guide model alone.",
    roles=frozenset({"guide"}),
    drives="guide",
    colour="#d9a400",
    driven=frozenset({"full"}),
    steps={"full": ignoring_spec(solo_steps)},
    remote_steps={"full": ignoring_spec(remote_guide_steps)},
    rank=2,
)
