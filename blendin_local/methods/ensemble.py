"""``ensemble``: BlendIn with fixed knobs: the guide is blended in at every step with α = ½."""

from __future__ import annotations

import dataclasses
import math

from .blendin import SPEC as BLENDIN

SPEC = dataclasses.replace(
    BLENDIN,
    name="ensemble",
    help="Average base and guide at every step (alpha = 1/2).",
    colour="#9467bd",
    knobs=frozenset({"support"}),
    fixed={"gamma": math.inf, "alpha": 0.5},
    rank=4,
)
