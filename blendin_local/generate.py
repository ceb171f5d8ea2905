"""The one decoding API: ``generate(pair, conversation, settings)`` yields a :class:`Step` per token.

CLI, TUI, eval, bench and trace all consume it; nothing re-implements decoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from . import blend
from .decide import Decider, build_step, candidates, check_pair, provenance_of
from .engine import Engine, is_remote, set_tokens
from .errors import ContextOverflowError
from .output import OutputText
from .pair import ModelPair, prompt_for
from .prompts import Conversation
from .sampling import make_sampler
from .settings import GenerationSettings
from .steps import Provenance, Result, Step, StopReason, Tally
from .sync import TextSync

if TYPE_CHECKING:
    from .guide_side import GuideView


class Generation:
    """An iterable of :class:`Step`; ``result`` summarises it, also after a cancel or Ctrl-C.

    ``cancel()`` (from another thread, e.g. a TUI worker) ends it before the next token.
    """

    def __init__(self, pair: ModelPair, conv: Conversation, settings: GenerationSettings) -> None:
        check_pair(pair, settings)
        self.pair = pair
        self.conv = conv
        self.settings = settings.effective()
        self.tally = Tally()
        self.stop_reason: StopReason | None = None
        self.prompt_tokens = 0
        self.cached_tokens = 0  # prompt tokens the driving model already held (reuse_cache)
        self.prefill_s = 0.0
        self.syncs: list[TextSync] = []  # their first catch-up (the guide's prompt) is prefill
        self._cancelled = False
        self._started: float | None = None
        self._ended: float | None = None
        self.rng = np.random.default_rng(self.settings.sampling.seed)
        self.sample = make_sampler(self.settings.sampling)
        self.output = OutputText(self._stops())

    def _stops(self) -> tuple[str, ...]:
        stops = tuple(self.settings.stop) + tuple(self.conv.extra_stops)
        role = "guide" if self.settings.method == "guide" else "base"
        driver = self.pair.guide if role == "guide" else self.pair.base
        if driver is not None and self.conv.chat:
            if not prompt_for(driver, self.conv, role=role).templated:
                stops += (self.conv.plain.next_turn_stop,)
        return stops

    def cancel(self) -> None:
        self._cancelled = True

    def push(self, piece: bytes, index: int) -> str:
        """Add a token's bytes to the answer; returns the text to show for this step, noting a
        stop string, and flushing held-back text at the token limit."""
        text = self.output.push(piece)
        if self.output.stopped:
            self.stop_reason = StopReason.STOP_STRING
        elif index + 1 >= self.settings.max_tokens:
            text += self.output.finish()
        return text

    def __iter__(self) -> Iterator[Step]:
        self._started = time.perf_counter()
        # By default every generation starts from empty caches: reusing a previous prompt's KV
        # changes batch shapes, hence logits in the last bits, hence near-tie tokens (spec §3).
        # With reuse_cache the caches keep their tokens and each prompt evaluates only what differs
        # from them (set_tokens); the last cached position is always evaluated again, so no stale
        # logits row can be read.
        for engine in (self.pair.base, self.pair.guide, self.pair.anti):
            if engine is not None and not is_remote(engine):
                keep = max(len(engine.tokens) - 1, 0) if self.settings.reuse_cache else 0
                engine.rollback(keep)
        try:
            for step in self._steps():
                self.tally.add(step)
                yield step
                if self._cancelled and self.stop_reason is None:
                    self.stop_reason = StopReason.CANCELLED
                if self.stop_reason is not None:
                    return
            if self.stop_reason is None:
                self.stop_reason = StopReason.MAX_TOKENS
        except (KeyboardInterrupt, GeneratorExit):
            if self.stop_reason is None:
                self.stop_reason = StopReason.INTERRUPTED
            raise
        finally:
            self._ended = time.perf_counter()

    def run(self) -> Result:
        """Consume every step and return the summary."""
        for _ in self:
            pass
        return self.result

    @property
    def result(self) -> Result:
        end = self._ended or time.perf_counter()
        seconds = end - (self._started or end)
        return Result.from_tally(
            self.tally,
            text=self.output.text,
            method=self.settings.method,
            stop=self.stop_reason,
            prompt_tokens=self.prompt_tokens,
            seconds=seconds,
            prefill_s=self.prefill_s + sum(sync.prefill_s for sync in self.syncs),
            events=self.settings.method == "nudging",
            remote=self._remote_traffic(seconds),
        )

    def _remote_traffic(self, seconds: float) -> dict[str, object] | None:
        """Requests, bytes and waiting time per remote model, and the client's own ms per token."""
        roles = (("base", self.pair.base, self.tally.t_base), ("guide", self.pair.guide, self.tally.t_guide))
        remote = {role: engine.report() for role, engine, _ in roles if is_remote(engine)}
        if not remote:
            return None
        waited = sum(float(t["seconds"]) for t in remote.values())
        local_models = sum(t for _, engine, t in roles if engine is not None and not is_remote(engine))
        own = max(seconds - waited - local_models - self.prefill_s, 0.0)
        return {**remote, "client_ms_per_token": round(1000 * own / max(self.tally.tokens, 1), 3)}

    # --- step sources ---------------------------------------------------------------------
    def _steps(self) -> Iterator[Step]:
        s = self.settings
        if is_remote(self.pair.base) or is_remote(self.pair.guide):
            from .remote_steps import remote_steps, runs_remote_loop

            if runs_remote_loop(self):
                return remote_steps(self)
        if s.method == "guide":
            assert self.pair.guide is not None
            return self._solo_steps(self.pair.guide, Provenance.GUIDE, role="guide")
        if s.method == "nudging":
            from .nudging import nudging_steps

            return nudging_steps(self)
        if s.support == "top100" and s.method in ("blendin", "ensemble"):
            from .top100 import top100_steps

            return top100_steps(self)
        return self._base_driven_steps()

    def prefill(self, engine: Engine, role: str) -> list[int]:
        """Put the prompt in ``engine``'s KV cache, evaluated in one go."""
        t0 = time.perf_counter()
        prompt = prompt_for(engine, self.conv, role=role)
        ids = engine.tokenize(prompt.text, add_bos=prompt.add_bos)
        if len(ids) >= engine.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(ids)} tokens for {engine.name}, which has a context of "
                f"{engine.n_ctx}: shorten it or raise --n-ctx"
            )
        self.cached_tokens = len(ids) - set_tokens(engine, ids)
        self.prompt_tokens = len(ids)
        self.prefill_s += time.perf_counter() - t0
        return ids

    def text_syncs(self) -> tuple[TextSync, GuideView]:
        """Prompt the base and keep it on the canonical tokenisation of its prompt + the answer
        text; the guide, local or on a server, is read through a :class:`GuideView` (the text-level
        methods: nudging, top100)."""
        from .guide_side import guide_view

        base = self.pair.base
        assert base is not None
        bp = prompt_for(base, self.conv, role="base")
        self.prefill(base, "base")
        base_sync = TextSync(base, bp.text, add_bos=bp.add_bos)
        self.syncs.append(base_sync)
        return base_sync, guide_view(self)

    def end_token(self, engine: Engine, token: int) -> bool:
        return token in engine.eog_ids()

    def room_left(self, engine: Engine) -> bool:
        return len(engine.tokens) < engine.n_ctx

    def _base_driven_steps(self) -> Iterator[Step]:
        """base, blendin, ensemble, proxy over full distributions (spec §2)."""
        base = self.pair.base
        assert base is not None
        t0 = time.perf_counter()
        self.prefill(base, "base")
        decider = Decider(self.pair, self.settings, self.conv)
        self.syncs += [x for x in (decider.guide_sync, decider.anti_sync) if x is not None]
        pieces = base.pieces()
        controls = base.control_ids()
        t_base = time.perf_counter() - t0
        for index in range(self.settings.max_tokens):
            if self._cancelled:
                self.stop_reason = StopReason.CANCELLED
                return
            t1 = time.perf_counter()
            decision = decider.decide(base.logits(), self.output.y, index)
            token = self.sample(decision.probs, self.rng)
            t_blend = time.perf_counter() - t1 - decision.t_guide
            if self.end_token(base, token):
                by_guide = provenance_of(decision, token) is Provenance.BLEND_GUIDE
                self.stop_reason = StopReason.GUIDE_EOS if by_guide else StopReason.EOS
                text = self.output.finish()
            else:
                text = self.push(b"" if token in controls else pieces[token], index)
            t2 = time.perf_counter()
            step = build_step(
                decider, decision, index=index, token=token, piece=pieces[token], text=text,
                base_pieces=pieces, t_base=t_base, t_blend=t_blend + time.perf_counter() - t2,
            )
            if self.stop_reason is None and index + 1 < self.settings.max_tokens:
                if not self.room_left(base):
                    self.stop_reason = StopReason.CONTEXT_FULL
                else:
                    t3 = time.perf_counter()
                    base.eval([token])
                    t_base = time.perf_counter() - t3
            yield step

    def halted(self, engine: Engine) -> bool:
        """A cancel, or a context with no room for another token, ends the generation here."""
        if self._cancelled:
            self.stop_reason = StopReason.CANCELLED
        elif not self.room_left(engine):
            self.stop_reason = StopReason.CONTEXT_FULL
        return self.stop_reason is not None

    def own_step(
        self, engine: Engine, index: int, *, provenance: Provenance, t_model: float
    ) -> Step:
        """Sample ``engine``'s own next token (no blending), add it to the answer, describe it.

        ``provenance`` BASE records the probabilities as the base's, GUIDE as the guide's.
        """
        t0 = time.perf_counter()
        p = blend.softmax(engine.logits())
        token = self.sample(p, self.rng)
        piece = engine.pieces()[token]
        if self.end_token(engine, token):
            self.stop_reason = StopReason.EOS
            text = self.output.finish()
        else:
            text = self.push(b"" if token in engine.control_ids() else piece, index)
        top, chosen = float(p.max()), float(p[token])
        is_base = provenance is Provenance.BASE
        return Step(
            index=index, token=token, piece=piece, text=text, provenance=provenance,
            intervened=False, b=top if is_base else None, g=None if is_base else top,
            p_base_token=chosen if is_base else None, p_guide_token=None if is_base else chosen,
            p_token=chosen, top=candidates(p, engine.pieces(), n) if (n := self.settings.final_top) else (),
            t_base=t_model if is_base else 0.0, t_guide=0.0 if is_base else t_model,
            t_blend=time.perf_counter() - t0,
        )

    def _solo_steps(self, engine: Engine, provenance: Provenance, *, role: str) -> Iterator[Step]:
        """One model alone with its own prompt and its own stop (the ``guide`` baseline)."""
        t0 = time.perf_counter()
        self.prefill(engine, role)
        t_model = time.perf_counter() - t0
        for index in range(self.settings.max_tokens):
            step = self.own_step(engine, index, provenance=provenance, t_model=t_model)
            yield step
            if index + 1 == self.settings.max_tokens or self.halted(engine):
                return
            t1 = time.perf_counter()
            engine.eval([step.token])
            t_model = time.perf_counter() - t1


def generate(pair: ModelPair, conv: Conversation, settings: GenerationSettings) -> Generation:
    """Start a generation; iterate it for :class:`Step` records, then read ``.result``."""
    return Generation(pair, conv, settings)
