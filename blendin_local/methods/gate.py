"""When the guide speaks (spec §2): the γ gate and the intervention cap, one pure function for every
loop that gates on the base's top-1 probability (``decide``, ``top100``, a remote base, replay)."""

from __future__ import annotations

from ..settings import CAP_WARMUP


def gate_open(b: float, gamma: float, cap: float | None, interventions: int, index: int) -> bool:
    """Does the guide speak at step ``index``?

    Args:
        b: the base's top-1 probability here; the guide speaks only where ``b < gamma``.
        cap: at most this share of the steps so far may be interventions, counted from step
            ``CAP_WARMUP`` on (None: no cap; 0: none after the warm-up).
        interventions: the interventions among the ``index`` steps so far.
    """
    if not b < gamma:
        return False
    return not (cap is not None and index >= CAP_WARMUP and interventions / index >= cap)
