"""The one decoding API: ``generate(pair, conversation, settings)`` yields a :class:`Step` per token.

CLI, TUI, eval, bench and trace all consume it; nothing re-implements decoding. The method's steps
come from its step source in the :mod:`methods` registry.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from functools import partial

from ..engines.base import Eval, run_eval
from ..pair import ModelPair
from ..pair_check import check_pair
from ..prompts import Conversation
from ..settings import GenerationSettings
from .decoding import Decoding
from .overlap import Overlap, overlap_allowed
from .steps import Result, Step, StopReason


class Generation(Decoding):
    """An iterable of :class:`Step`; ``result`` summarises it, also after a cancel or Ctrl-C.

    ``cancel()`` (from another thread, e.g. a TUI worker) ends it before the next token.
    """

    def __init__(self, pair: ModelPair, conv: Conversation, settings: GenerationSettings) -> None:
        self.spec = check_pair(pair, settings)
        super().__init__(pair, conv, self.spec.effective(settings), driver=self.spec.drives)
        self._started: float | None = None
        self._ended: float | None = None
        self.overlapped = False  # did the guide catch up beside the base (generation.overlap)?

    def __iter__(self) -> Iterator[Step]:
        """The one-answer driver: each evaluation request runs at once (with its ``beside`` work
        in a worker thread meanwhile, where :func:`overlap_allowed`)."""
        events = self.events()
        overlap = Overlap() if overlap_allowed(self.pair) else None
        self.overlapped = overlap is not None
        try:
            for event in events:
                if not isinstance(event, Eval):
                    yield event
                elif overlap is not None:
                    overlap.run(partial(run_eval, event), [event])
                else:
                    run_eval(event)
        except KeyboardInterrupt:
            if self.stop_reason is None:
                self.stop_reason = StopReason.INTERRUPTED
            raise
        finally:
            events.close()
            if overlap is not None:
                overlap.close()

    def events(self) -> Generator[Step | Eval, None, None]:
        """The steps of the answer and the evaluation requests between them, for a driver to run
        (:meth:`__iter__` runs them at once; ``many.GenerationBatch`` batches many answers')."""
        self._started = time.perf_counter()
        # By default every generation starts from empty caches: reusing a previous prompt's KV
        # changes batch shapes, hence logits in the last bits, hence near-tie tokens (spec §3).
        # With reuse_cache the caches keep their tokens and each prompt evaluates only what differs
        # from them (set_tokens), which evaluates the prompt's last position again whenever the
        # engine holds no logits row for it (``logits_ready``: false after a rollback like this
        # one, or after a failed eval), so no stale row is read.
        for engine in (self.pair.base, self.pair.guide, self.pair.anti):
            if engine is not None and engine.capabilities.kv_cache:
                keep = max(len(engine.tokens) - 1, 0) if self.settings.reuse_cache else 0
                engine.rollback(keep)
        try:
            for event in self._steps():  # the driver (``driver.drive``) ends it: stop, cancel, limit
                if not isinstance(event, Eval):
                    self.tally.add(event)
                yield event
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
            events=self.spec.events,
            remote=self._remote_traffic(seconds),
        )

    def _remote_traffic(self, seconds: float) -> dict[str, object] | None:
        """Requests, bytes and waiting time per remote model, and the client's own ms per token."""
        roles = (("base", self.pair.base, self.tally.t_base), ("guide", self.pair.guide, self.tally.t_guide))
        reports = {role: engine.report() for role, engine, _ in roles if engine is not None}
        remote = {role: report for role, report in reports.items() if report is not None}
        if not remote:
            return None
        waited = sum(float(t["seconds"]) for t in remote.values())
        local_models = sum(t for role, _, t in roles if role in reports and role not in remote)
        own = max(seconds - waited - local_models - self.prefill_s, 0.0)
        return {**remote, "client_ms_per_token": round(1000 * own / max(self.tally.tokens, 1), 3)}

    @property
    def batches(self) -> bool:
        """Does this answer's step source leave every evaluation to its driver (so that many
        answers can share batched decodes)?"""
        driver = self.pair.base if self.spec.drives == "base" else self.pair.guide
        return (self.settings.compat != "paper" and driver is not None and driver.capabilities.kv_cache
                and self.spec.batches(self.settings))

    def _steps(self) -> Iterator[Step | Eval]:
        """The method's step source for these settings and its driving model, local or on a server
        (checked by ``check_pair``)."""
        if self.settings.compat == "paper":  # the reference's own loop over two servers
            from ..paper.steps import paper_steps

            return paper_steps(self)
        driver = self.pair.base if self.spec.drives == "base" else self.pair.guide
        assert driver is not None
        source = self.spec.source(self.settings, remote_driver=not driver.capabilities.dense_logits)
        assert source is not None
        return source(self, self.spec)


def generate(pair: ModelPair, conv: Conversation, settings: GenerationSettings) -> Generation:
    """Start a generation; iterate it for :class:`Step` records, then read ``.result``."""
    return Generation(pair, conv, settings)
