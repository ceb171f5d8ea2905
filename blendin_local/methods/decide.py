"""One BlendIn decision at a base position (spec §2), shared by ``generate`` and ``replay``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .. import blend
from ..engines.base import Requests, now
from ..generation.decoding import candidates
from ..generation.steps import Candidate, Provenance, Step
from ..generation.sync import TextSync
from ..pair import ModelPair, prompt_for
from ..projection import Projection
from ..prompts import Conversation
from ..settings import GenerationSettings
from .gate import gate_open
from .spec import MethodSpec

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Decision:
    """The final distribution of a step and how it came about."""

    probs: F32
    p_base: F32
    intervened: bool
    b: float
    g: float | None = None
    alpha: float | None = None
    q_guide: F32 | None = None
    approx_mass: float | None = None
    t_guide: float = 0.0  # the guide's evaluations and NumPy
    t_waited: float = 0.0  # suspended while other answers' requests ran (batched driving)
    t_beside: float = 0.0  # the guide's catch-ups since the last step, run beside the base's decode


class Decider:
    """Gate, guide catch-up, projection and blend for the base-driven methods in full support."""

    def __init__(self, pair: ModelPair, settings: GenerationSettings, conv: Conversation,
                 method: MethodSpec) -> None:
        self.pair = pair
        self.settings = settings
        self.gate = method.gate
        self.interventions = 0
        self.beside_s = 0.0  # catch-ups run beside the base since the last decision
        self.guide_sync: TextSync | None = None
        self.anti_sync: TextSync | None = None
        self.projection: Projection | None = None
        if pair.guide is not None and "guide" in method.roles:
            gp = prompt_for(pair.guide, conv, role="guide")
            self.guide_sync = TextSync(pair.guide, gp.text, add_bos=gp.add_bos, lstrip_answer=gp.templated)
            proj = pair.projection
            assert proj is not None
            self.projection = proj if settings.guide_can_stop else proj.without_end()
            self._start_projection = self.projection.at_answer_start()
            self._approx = self.projection.approx_mask
        if "anti" in method.roles and pair.anti is not None:
            ap = prompt_for(pair.anti, conv, role="guide")
            self.anti_sync = TextSync(pair.anti, ap.text, add_bos=ap.add_bos, lstrip_answer=ap.templated)

    def gate_open(self, p_base: F32, index: int) -> bool:
        """Does the guide speak at this step? (γ gate, then the optional intervention cap)."""
        if self.gate == "never" or self.guide_sync is None:
            return False
        if self.gate == "always":
            return True
        s = self.settings
        return gate_open(float(p_base.max()), s.gamma, s.cap, self.interventions, index)

    def beside(self, y: bytes) -> list[Requests[int]]:
        """The guide's (and anti-expert's) catch-up with the answer ``y``, as requests that may run
        beside the base's decode (``Eval.beside``): where the gate then opens, the distribution is
        ready and the catch-up in :meth:`decide_requests` evaluates nothing."""
        if self.gate == "never":
            return []
        return [self._timed(sync.requests(y)) for sync in (self.guide_sync, self.anti_sync)
                if sync is not None]

    def _timed(self, requests: Requests[int]) -> Requests[int]:
        n = 0
        for request in requests:
            yield request
            self.beside_s += request.seconds
            n += len(request.ids)
        return n

    def _guide_distribution(
        self, sync: TextSync, y: bytes
    ) -> Requests[tuple[F32, F32, float, float]]:
        """Catch the guide up with ``y`` (as requests); returns (p_guide over its vocab, q over
        base vocab, seconds of guide work: its evaluations and this NumPy, seconds waited for
        other answers' requests)."""
        t0 = time.perf_counter()
        waited = 0.0
        catch_up = sync.requests(y)
        for request in catch_up:
            t1 = time.perf_counter()
            yield request
            waited += time.perf_counter() - t1 - request.seconds
        p = blend.softmax(sync.engine.logits())
        projection = self.projection
        assert projection is not None
        if sync.lstrip_answer and not y.strip():
            projection = self._start_projection
        elif projection.identity:
            return p, p, time.perf_counter() - t0 - waited, waited
        q, _ = projection.apply(p)
        return p, q, time.perf_counter() - t0 - waited, waited

    def decide(self, base_logits: F32, y: bytes, index: int) -> Decision:
        """One decision, evaluating the guide (where the gate opens) at once."""
        return now(self.decide_requests(base_logits, y, index))

    def decide_requests(self, base_logits: F32, y: bytes, index: int) -> Requests[Decision]:
        """:meth:`decide`, yielding the guide's catch-up as evaluation requests."""
        p_base = blend.softmax(base_logits)
        b = float(p_base.max())
        t_beside, self.beside_s = self.beside_s, 0.0
        if not self.gate_open(p_base, index):
            return Decision(p_base, p_base, False, b, t_beside=t_beside)
        self.interventions += 1
        assert self.guide_sync is not None
        p_guide, q_guide, t_guide, waited = yield from self._guide_distribution(self.guide_sync, y)
        g = float(p_guide.max())
        approx = float(p_guide[self._approx].sum()) if self._approx.any() else 0.0
        if self.anti_sync is not None:  # proxy-tuning: the guide's offset from its untuned self
            _, q_anti, t_anti, waited_anti = yield from self._guide_distribution(self.anti_sync, y)
            probs = blend.proxy_combine(p_base, q_guide, q_anti)
            return Decision(probs, p_base, True, b, g, None, q_guide, approx, t_guide + t_anti,
                            waited + waited_anti, t_beside)
        alpha = self.settings.alpha
        if alpha is None:
            alpha = blend.auto_alpha(b, g, float(p_base[int(np.argmax(q_guide))]))
        probs = blend.blend(p_base, q_guide, alpha)
        return Decision(probs, p_base, True, b, g, alpha, q_guide, approx, t_guide, waited, t_beside)

    @staticmethod
    def overlaps(p_base: F32, q_guide: F32) -> tuple[float, float]:
        """overlap@10 and @100 (one top-100 per model; the top 10 are its first ten)."""
        top_b = blend.top_k_ids(p_base, 100)
        top_g = blend.top_k_ids(q_guide, 100)
        o10 = np.intersect1d(top_b[:10], top_g[:10], assume_unique=True).size / 10.0
        o100 = np.intersect1d(top_b, top_g, assume_unique=True).size / 100.0
        return float(o10), float(o100)


def provenance_of(decision: Decision, token: int) -> Provenance:
    if not decision.intervened:
        return Provenance.BASE
    if token == int(np.argmax(decision.p_base)):
        return Provenance.BLEND_AGREE
    return Provenance.BLEND_GUIDE


def build_step(
    decider: Decider,
    decision: Decision,
    *,
    index: int,
    token: int,
    piece: bytes,
    text: str,
    base_pieces: list[bytes],
    t_base: float,
    t_blend: float,
) -> Step:
    """The step record, with diagnostics where the guide ran (or everywhere with diagnostics on)."""
    s = decider.settings
    d = decision
    o10 = o100 = None
    base_top: tuple[Candidate, ...] = ()
    guide_top: tuple[Candidate, ...] = ()
    ent_b = ent_g = jsd = None
    if d.q_guide is not None:
        o10, o100 = decider.overlaps(d.p_base, d.q_guide)
    if s.diagnostics:
        base_top = candidates(d.p_base, base_pieces, s.top_n)
        ent_b = blend.entropy(d.p_base)
        if d.q_guide is not None:
            guide_top = candidates(d.q_guide, base_pieces, s.top_n)
            ent_g = blend.entropy(d.q_guide)
            jsd = blend.js_divergence(d.p_base, d.q_guide)
    return Step(
        index=index, token=token, piece=piece, text=text,
        provenance=provenance_of(d, token), intervened=d.intervened,
        b=d.b, g=d.g, alpha=d.alpha,
        p_base_token=float(d.p_base[token]),
        p_guide_token=float(d.q_guide[token]) if d.q_guide is not None else None,
        base_top=base_top, guide_top=guide_top, overlap10=o10, overlap100=o100,
        entropy_base=ent_b, entropy_guide=ent_g, jsd=jsd, approx_mass=d.approx_mass,
        p_token=float(d.probs[token]),
        top=candidates(d.probs, base_pieces, s.final_top) if s.final_top else (),
        t_base=t_base, t_guide=d.t_guide + d.t_beside, t_blend=t_blend,
    )
