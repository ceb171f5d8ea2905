"""``base``: the base model alone (the unaligned baseline)."""

from __future__ import annotations

from .full import base_driven_steps
from .remote_steps import remote_base_steps
from .spec import MethodSpec, ignoring_spec

SPEC = MethodSpec(
    name="base",
    help="The base model alone.",
    roles=frozenset({"base"}),
    drives="base",
    colour="#555555",
    replays=True,
    replays_text=True,
    driven=frozenset({"full"}),
    steps={"full": base_driven_steps},
    remote_steps={"full": ignoring_spec(remote_base_steps)},
    rank=1,
)
