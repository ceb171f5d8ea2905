"""Decoding settings, validated at the boundary with messages that name the parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from . import limits
from .errors import UsageError
from .generation.sampling import SamplingSettings

Support = Literal["full", "top100"]
SUPPORTS: tuple[str, ...] = ("full", "top100")
COMPATS: tuple[str, ...] = ("native", "paper")  # paper: the reference's decisions (paper.py)
PAPER_METHODS = ("blendin", "ensemble")

CAP_WARMUP = 20  # the intervention cap applies after this many tokens (paper)
NUDGE_TOKENS = 16  # tokens the guide writes per nudge, and base chunk size (reference)


def parse_alpha(value: str | float | None) -> float | None:
    """``"auto"``/None → None (auto α); else a float in [0, 1]."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, str):
        return float(limits.parse("alpha", value))
    limits.check("alpha", value)
    return float(value)


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. ``alpha=None`` is auto α; ``gamma > 1`` makes every step intervene.

    ``method`` names a method of the :mod:`methods` registry, which checks it when a generation
    starts (``methods.get``).
    """

    method: str = "blendin"
    gamma: float = 0.4
    alpha: float | None = None
    support: str = "full"
    cap: float | None = None
    guide_can_stop: bool = True
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    diagnostics: bool = False  # top-5, entropies, JSD and overlaps at every step (trace / TUI)
    top_n: int = 5
    final_top: int = 0  # top candidates of each step's final distribution to record (logprobs)
    # Keep what the KV caches hold from the previous generation and evaluate only the prompt's new
    # tokens (chat, serve). Off: every generation starts from empty caches, bit-reproducible.
    reuse_cache: bool = False
    compat: str = "native"

    def __post_init__(self) -> None:
        for name in ("gamma", "max_tokens", "final_top"):
            limits.check(name, getattr(self, name))
        for name in ("alpha", "cap"):
            if getattr(self, name) is not None:
                limits.check(name, getattr(self, name))
        if self.support not in SUPPORTS:
            raise UsageError(f"--support must be 'full' or 'top100', got {self.support!r}")
        if any(not s for s in self.stop):
            raise UsageError("--stop strings must not be empty")
        if self.compat not in COMPATS:
            raise UsageError(f"--compat must be one of {', '.join(COMPATS)}, got {self.compat!r}")
        if self.compat == "paper":
            self._check_paper()
            # the reference's blend is the top-100 string blend (the pair check asks for top-k)
            object.__setattr__(self, "support", "top100")

    def _check_paper(self) -> None:
        """What the reference's blending loop has no room for."""
        if self.method not in PAPER_METHODS:
            raise UsageError(f"--compat paper runs --method {' or '.join(PAPER_METHODS)}, "
                             f"got {self.method!r}")
        if self.cap is not None:
            raise UsageError("--cap: the reference's blending loop has no intervention cap "
                             "(drop --cap or --compat paper)")
        sm = self.sampling
        if (sm.temperature, sm.top_k, sm.top_p, sm.min_p) != (0.0, 0, 1.0, 0.0):
            raise UsageError("--compat paper decodes greedily and sends the reference's own "
                             "top_p 0.9: leave --temperature, --top-k, --top-p and --min-p at "
                             "their defaults")

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "gamma": self.gamma,
            "alpha": "auto" if self.alpha is None else self.alpha,
            "support": self.support,
            "cap": self.cap,
            "guide_can_stop": self.guide_can_stop,
            "max_tokens": self.max_tokens,
            "temperature": self.sampling.temperature,
            "top_k": self.sampling.top_k,
            "top_p": self.sampling.top_p,
            "min_p": self.sampling.min_p,
            "seed": self.sampling.seed,
            # only when set, so that records of earlier runs still match their manifests
            **({"compat": self.compat} if self.compat != "native" else {}),
        }
