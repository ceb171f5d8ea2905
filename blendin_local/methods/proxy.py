"""``proxy``: proxy-tuning (Liu et al. 2024): base + (guide − its untuned counterpart) in logit
space at every step; needs ``--anti-expert``."""

from __future__ import annotations

from .full import base_driven_steps
from .spec import MethodSpec

SPEC = MethodSpec(
    name="proxy",
    help="Proxy-tuning: base logits + (guide - anti-expert) logits at every step.",
    roles=frozenset({"base", "guide", "anti"}),
    drives="base",
    colour="#8c564b",
    gate="always",
    projects=True,
    replays=True,
    driven=frozenset({"full"}),
    steps={"full": base_driven_steps},
    rank=5,
)
