"""``ensemble``: BlendIn with fixed knobs: the guide is blended in at every step with α = ½."""

from __future__ import annotations

import math

from .full import base_driven_steps
from .remote_steps import remote_base_steps
from .spec import MethodSpec, ignoring_spec
from .top100 import top100_steps

SPEC = MethodSpec(
    name="ensemble",
    help="Average base and guide at every step (alpha = 1/2).",
    roles=frozenset({"base", "guide"}),
    drives="base",
    colour="#9467bd",
    knobs=frozenset({"support"}),
    supports=frozenset({"full", "top100"}),
    gate="gamma",
    fixed={"gamma": math.inf, "alpha": 0.5},
    projects=True,
    replays=True,
    replays_text=True,
    driven=frozenset({"full", "top100"}),
    steps={"full": base_driven_steps, "top100": ignoring_spec(top100_steps)},
    remote_steps={"top100": ignoring_spec(remote_base_steps)},
    reads_guide_text=frozenset({"top100"}),
    rank=4,
)
