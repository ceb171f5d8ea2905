"""The state one decoding run shares with the step sources of every method (``methods/``): the pair,
the conversation, the settings, the answer text, the sampler, and the small helpers they all use.

:class:`generate.Generation` builds on it and picks the method's step source from the registry; the
step sources take a :class:`Decoding`, so they depend on this module and never on ``generate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .. import blend
from ..engines.base import Engine, Requests, now, set_tokens_requests
from ..errors import ContextOverflowError
from ..pair import ModelPair, prompt_for
from ..prompts import Conversation
from ..settings import GenerationSettings
from .output import OutputText
from .sampling import make_sampler
from .steps import Candidate, Provenance, Step, StopReason, Tally
from .sync import TextSync


def candidates(p: np.ndarray, pieces: list[bytes], n: int) -> tuple[Candidate, ...]:
    """The ``n`` most likely ids of ``p`` with their text and probability."""
    ids = blend.top_k_ids(p, n)
    return tuple(
        Candidate(int(i), pieces[i].decode("utf-8", errors="replace"), float(p[i])) for i in ids
    )


class Decoding:
    """One decoding run's shared state. ``driver`` is the role whose tokens make the answer (the
    base, or the guide for the ``guide`` baseline); ``settings`` are the method's effective ones."""

    def __init__(self, pair: ModelPair, conv: Conversation, settings: GenerationSettings,
                 *, driver: str = "base") -> None:
        self.pair = pair
        self.conv = conv
        self.settings = settings
        self.driver = driver
        self.tally = Tally()
        self.stop_reason: StopReason | None = None
        self.prompt_tokens = 0
        self.cached_tokens = 0  # prompt tokens the driving model already held (reuse_cache)
        self.prefill_s = 0.0
        self.syncs: list[TextSync] = []  # their first catch-up (the guide's prompt) is prefill
        self._cancelled = False
        self.rng = np.random.default_rng(self.settings.sampling.seed)
        self.sample = make_sampler(self.settings.sampling)
        self.output = OutputText(self._stops())

    def _stops(self) -> tuple[str, ...]:
        if self.settings.compat == "paper":  # the reference stops on the base's finish only
            return tuple(self.settings.stop)
        stops = tuple(self.settings.stop) + tuple(self.conv.extra_stops)
        role = self.driver
        driver = self.pair.guide if role == "guide" else self.pair.base
        if driver is not None and self.conv.chat:
            if not prompt_for(driver, self.conv, role=role).templated:
                stops += (self.conv.plain.next_turn_stop,)
        return stops

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def prefill_requests(self, engine: Engine, role: str) -> Requests[list[int]]:
        """Put the prompt in ``engine``'s KV cache, evaluated in one go, as an evaluation request (a
        runner may batch it with other answers')."""
        t0 = time.perf_counter()
        prompt = prompt_for(engine, self.conv, role=role)
        ids = engine.tokenize(prompt.text, add_bos=prompt.add_bos)
        if len(ids) >= engine.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(ids)} tokens for {engine.name}, which has a context of "
                f"{engine.n_ctx}: shorten it or raise --n-ctx"
            )
        self.cached_tokens = len(ids) - (yield from set_tokens_requests(engine, ids))
        self.prompt_tokens = len(ids)
        self.prefill_s += time.perf_counter() - t0
        return ids

    def base_text_sync(self) -> TextSync:
        """Prompt the base and keep it on the canonical tokenisation of its prompt + the answer
        text (the text-level methods: nudging, top100; they read the guide through
        ``methods.guide_side``)."""
        return now(self.base_text_sync_requests())

    def base_text_sync_requests(self) -> Requests[TextSync]:
        """:meth:`base_text_sync`, its prompt as an evaluation request."""
        base = self.pair.base
        assert base is not None
        bp = prompt_for(base, self.conv, role="base")
        yield from self.prefill_requests(base, "base")
        base_sync = TextSync(base, bp.text, add_bos=bp.add_bos)
        self.syncs.append(base_sync)
        return base_sync

    def own_choice(
        self, engine: Engine, index: int, provenance: Provenance
    ) -> tuple[int, Callable[[str, float, float], Step]]:
        """Sample ``engine``'s own next token; returns it and the function that describes the step
        (from the text to show, the model's seconds and the seconds spent choosing)."""
        p = blend.softmax(engine.logits())
        token = self.sample(p, self.rng)
        piece = engine.pieces()[token]
        top, chosen = float(p.max()), float(p[token])
        is_base = provenance is Provenance.BASE

        def describe(text: str, t_model: float, t_choose: float) -> Step:
            t0 = time.perf_counter()
            n = self.settings.final_top
            return Step(
                index=index, token=token, piece=piece, text=text, provenance=provenance,
                intervened=False, b=top if is_base else None, g=None if is_base else top,
                p_base_token=chosen if is_base else None,
                p_guide_token=None if is_base else chosen,
                p_token=chosen, top=candidates(p, engine.pieces(), n) if n else (),
                t_base=t_model if is_base else 0.0, t_guide=0.0 if is_base else t_model,
                t_blend=t_choose + time.perf_counter() - t0,
            )

        return token, describe
