"""``blendin``: the base writes; where its top-1 probability is below γ the guide's distribution is
blended in with weight α (auto: from the two models' confidences). The paper's method."""

from __future__ import annotations

from .full import base_driven_steps
from .remote_steps import remote_base_steps
from .spec import MethodSpec, ignoring_spec
from .top100 import top100_steps

SPEC = MethodSpec(
    name="blendin",
    help="BlendIn: blend the guide in where the base is unsure (top-1 < gamma).",
    roles=frozenset({"base", "guide"}),
    drives="base",
    colour="#1f77b4",
    knobs=frozenset({"gamma", "alpha", "cap", "support"}),
    supports=frozenset({"full", "top100"}),
    gate="gamma",
    projects=True,
    replays=True,
    replays_text=True,
    driven=frozenset({"full", "top100"}),
    steps={"full": base_driven_steps, "top100": ignoring_spec(top100_steps)},
    remote_steps={"top100": ignoring_spec(remote_base_steps)},
    reads_guide_text=frozenset({"top100"}),
    rank=0,
)
