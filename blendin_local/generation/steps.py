"""What the step generator yields and what a finished generation reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Provenance(str, Enum):
    """Who chose a token."""

    BASE = "base"  # the base was confident: no intervention
    BLEND_AGREE = "blend-agree"  # blended, and the result is the base's own favourite
    BLEND_GUIDE = "blend-guide"  # blended, and the guide changed the token
    GUIDE = "guide"  # written by the guide alone (guide method, nudging)


class StopReason(str, Enum):
    EOS = "eos"  # the base (or the guide-only model) ended
    GUIDE_EOS = "guide-eos"  # a blended step picked EOS because of the guide's end-of-turn
    STOP_STRING = "stop-string"
    MAX_TOKENS = "max-tokens"
    CONTEXT_FULL = "context-full"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class Candidate:
    token: int
    text: str
    prob: float


@dataclass(frozen=True, slots=True)
class Step:
    """One generated token and why it was chosen.

    ``text`` is what can be shown now: stop-string hold-back and incomplete UTF-8 are resolved, so
    joining every step's ``text`` gives the final answer.
    """

    index: int
    token: int
    piece: bytes
    text: str
    provenance: Provenance
    intervened: bool
    b: float | None  # base top-1 probability (None when the base did not run)
    g: float | None = None  # guide top-1 probability (None when the guide did not run)
    alpha: float | None = None
    p_base_token: float | None = None
    p_guide_token: float | None = None
    base_top: tuple[Candidate, ...] = ()
    guide_top: tuple[Candidate, ...] = ()
    overlap10: float | None = None
    overlap100: float | None = None
    entropy_base: float | None = None
    entropy_guide: float | None = None
    jsd: float | None = None
    approx_mass: float | None = None
    p_token: float | None = None  # the token's probability in the final distribution it was drawn from
    top: tuple[Candidate, ...] = ()  # that distribution's top candidates (settings.final_top)
    t_base: float = 0.0
    t_guide: float = 0.0
    t_blend: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--trace`` JSONL record)."""
        d = asdict(self)
        d["piece"] = self.piece.decode("utf-8", errors="replace")
        d["provenance"] = self.provenance.value
        d["base_top"] = [[c.token, c.text, round(c.prob, 6)] for c in self.base_top]
        d["guide_top"] = [[c.token, c.text, round(c.prob, 6)] for c in self.guide_top]
        d["top"] = [[c.token, c.text, round(c.prob, 6)] for c in self.top]
        return d


@dataclass
class Tally:
    """Running counts over a generation's steps (kept outside the generator so an interrupted
    generation still reports what it did)."""

    tokens: int = 0
    interventions: int = 0
    guide_changed: int = 0
    alphas: list[float] = field(default_factory=list)
    overlaps10: list[float] = field(default_factory=list)
    overlaps100: list[float] = field(default_factory=list)
    t_base: float = 0.0
    t_guide: float = 0.0
    t_blend: float = 0.0
    by_provenance: dict[str, int] = field(default_factory=dict)

    def add(self, step: Step) -> None:
        self.tokens += 1
        self.interventions += step.intervened
        self.guide_changed += step.provenance is Provenance.BLEND_GUIDE
        key = step.provenance.value
        self.by_provenance[key] = self.by_provenance.get(key, 0) + 1
        if step.alpha is not None:
            self.alphas.append(step.alpha)
        if step.overlap10 is not None:
            self.overlaps10.append(step.overlap10)
        if step.overlap100 is not None:
            self.overlaps100.append(step.overlap100)
        self.t_base += step.t_base
        self.t_guide += step.t_guide
        self.t_blend += step.t_blend


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


# Fewer intervention steps than this: a mean overlap says nothing yet.
MIN_INTERVENTIONS_FOR_WARNING = 5
# Mean overlap@10 below this at intervention steps: the paper's sign of an unreliable guide.
LOW_OVERLAP = 0.3


@dataclass(frozen=True)
class Result:
    """The summary of one generation (the ``--json`` object)."""

    text: str
    method: str
    stop_reason: StopReason | None  # None while the generation is still running
    tokens: int
    prompt_tokens: int
    interventions: int
    guide_changed: int
    mean_alpha: float | None
    mean_overlap10: float | None
    mean_overlap100: float | None
    seconds: float
    t_base: float
    t_guide: float
    t_blend: float
    by_provenance: dict[str, int]
    prefill_s: float = 0.0  # prompt processing, excluded from tokens/s
    interventions_are_events: bool = False  # nudging counts guide calls, not tokens
    remote: dict[str, Any] | None = None  # traffic per remote model (requests, bytes, seconds)

    @property
    def intervention_rate(self) -> float:
        return self.interventions / self.tokens if self.tokens else 0.0

    @property
    def guide_changed_rate(self) -> float:
        return self.guide_changed / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        decode = self.seconds - self.prefill_s
        return self.tokens / decode if decode > 0 else 0.0

    @property
    def warnings(self) -> list[str]:
        out = []
        if (
            self.mean_overlap10 is not None
            and self.interventions >= MIN_INTERVENTIONS_FOR_WARNING
            and self.mean_overlap10 < LOW_OVERLAP
        ):
            out.append(
                f"low top-10 overlap between base and guide ({self.mean_overlap10:.2f} < "
                f"{LOW_OVERLAP}): the guide may be unreliable for this base (paper §5)"
            )
        return out

    @classmethod
    def from_tally(
        cls, tally: Tally, *, text: str, method: str, stop: StopReason | None, prompt_tokens: int,
        seconds: float, prefill_s: float = 0.0, events: bool = False,
        remote: dict[str, Any] | None = None,
    ) -> Result:
        return cls(
            text=text, method=method, stop_reason=stop, tokens=tally.tokens,
            prompt_tokens=prompt_tokens, interventions=tally.interventions,
            guide_changed=tally.guide_changed, mean_alpha=_mean(tally.alphas),
            mean_overlap10=_mean(tally.overlaps10), mean_overlap100=_mean(tally.overlaps100),
            seconds=seconds, t_base=tally.t_base, t_guide=tally.t_guide, t_blend=tally.t_blend,
            by_provenance=dict(tally.by_provenance), prefill_s=prefill_s,
            interventions_are_events=events, remote=remote,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "method": self.method,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "interventions": self.interventions,
            "intervention_rate": round(self.intervention_rate, 4),
            "guide_changed": self.guide_changed,
            "guide_changed_rate": round(self.guide_changed_rate, 4),
            "mean_alpha": self.mean_alpha,
            "mean_overlap10": self.mean_overlap10,
            "mean_overlap100": self.mean_overlap100,
            "by_provenance": self.by_provenance,
            "seconds": round(self.seconds, 4),
            "prefill_s": round(self.prefill_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "time_split_s": {
                "base": round(self.t_base, 4),
                "guide": round(self.t_guide, 4),
                "blend": round(self.t_blend, 4),
            },
            "warnings": self.warnings,
            **({"remote": self.remote} if self.remote is not None else {}),
        }
