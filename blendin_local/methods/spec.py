"""What a decoding method is, as data: one frozen :class:`MethodSpec` per method module.

Everything outside ``methods/`` asks the registry (``methods.get(name)``) for these facts; no other
table names a method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..engines.base import Eval
from ..generation.decoding import Decoding
from ..generation.steps import Step
from ..settings import GenerationSettings

Role = Literal["base", "guide", "anti"]
Gate = Literal["never", "gamma", "always"]
# A step source gets the run's state and its method's spec, and yields the steps of the answer: it is
# ``driver.drive`` over the method's decisions, which ends the answer (stop, cancel, limit). A source
# that is driven (``MethodSpec.driven``) yields evaluation requests too instead of calling
# ``engine.eval`` itself, so a runner can batch them across answers (``many``).
StepSource = Callable[[Decoding, "MethodSpec"], Iterator[Step | Eval]]
Need = Literal["dense", "top_logprobs"]


@dataclass(frozen=True)
class MethodSpec:
    """A decoding method.

    Attributes:
        name: the ``--method`` value.
        help: one line for listings.
        roles: the models it runs (``base``, ``guide``, ``anti``).
        drives: the role whose tokens make the answer (its prompt's stop strings apply).
        knobs: the settings it reads (``gamma``, ``alpha``, ``cap``, ``support``).
        supports: the ``--support`` values it runs with (where ``support`` is a knob).
        projects: maps the guide's full distribution onto the base vocabulary (needs the pair's
            projection) where it runs with support ``full``.
        gate: when the guide speaks: ``never``, ``gamma`` (base top-1 < γ, then the cap) or ``always``.
        replays: whether ``replay`` can teacher-force it.
        replays_text: whether ``replay`` can teacher-force it along text over top-k strings
            (``--support top100``, or a base on a server).
        events: whether its intervention count is guide calls (nudging's events), not blended tokens.
        rate_note: a footnote for eval tables when ``events`` is set.
        colour: its colour in plots.
        fixed: settings it always runs with (ensemble: γ = ∞, α = ½).
        steps: its step sources over local engines, by support (``full`` when it ignores support).
        remote_steps: its step sources when the model it ``drives`` is on a server, by support.
        reads_guide_text: the supports where it reads the guide only as top-k strings or a greedy
            draft of text (so a guide on a server will do).
        rank: where it is listed (choices, tables): lower first, then by name.
        driven: the supports whose local step source makes no evaluation itself but yields
            :class:`~blendin_local.engines.base.Eval` requests, so that many answers can share
            one batched decode (``generate_many``); the others run one answer at a time there.
    """

    name: str
    help: str
    roles: frozenset[Role]
    drives: Role
    colour: str
    steps: Mapping[str, StepSource]
    knobs: frozenset[str] = frozenset()
    supports: frozenset[str] = frozenset({"full"})
    gate: Gate = "never"
    projects: bool = False
    replays: bool = False
    replays_text: bool = False
    events: bool = False
    rate_note: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    remote_steps: Mapping[str, StepSource] = field(default_factory=dict)
    reads_guide_text: frozenset[str] = frozenset()
    rank: int = 100
    driven: frozenset[str] = frozenset()

    @property
    def blends(self) -> bool:
        """Runs a base and a guide together (interventions and guide-changed rates mean something)."""
        return {"base", "guide"} <= self.roles

    def support_of(self, settings: GenerationSettings) -> str:
        """The support this method runs with: the setting where it reads one, else ``full``."""
        return settings.support if "support" in self.knobs else "full"

    def effective(self, settings: GenerationSettings) -> GenerationSettings:
        """``settings`` with this method's fixed knobs applied."""
        return replace(settings, **self.fixed) if self.fixed else settings

    def batches(self, settings: GenerationSettings) -> bool:
        """Can many answers of this method share batched decodes (its local step source)?"""
        return self.support_of(settings) in self.driven

    def needs(self, settings: GenerationSettings) -> dict[str, Need]:
        """What each role must give at a step, given the settings: ``dense`` (full-vocabulary logits
        and a KV cache) or ``top_logprobs`` (top-k logprobs per position are enough)."""
        support = self.support_of(settings)
        out: dict[str, Need] = {role: "dense" for role in sorted(self.roles)}
        if support in self.remote_steps:
            out[self.drives] = "top_logprobs"
        if "guide" in self.roles and support in self.reads_guide_text:
            out["guide"] = "top_logprobs"
        return out

    def source(self, settings: GenerationSettings, *, remote_driver: bool) -> StepSource | None:
        """The step source for these settings, with the driving model on a server or local (None:
        none)."""
        table = self.remote_steps if remote_driver else self.steps
        return table.get(self.support_of(settings))


def ignoring_spec(source: Callable[[Decoding], Iterator[Step | Eval]]) -> StepSource:
    """A step source that needs nothing of its method's spec."""

    def steps(gen: Decoding, spec: MethodSpec) -> Iterator[Step | Eval]:
        return source(gen)

    return steps
