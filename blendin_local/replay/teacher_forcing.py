"""Replay (teacher forcing, spec §6): walk an existing continuation and report, at every step, what
the method would decide there — gate, b, g, α, the token it would pick, and whether that is the
continuation's own next token."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .. import methods
from ..engines.remote.scoring import PromptScorer
from ..errors import ContextOverflowError, UsageError
from ..methods.decide import Decider, provenance_of
from ..pair import ModelPair, prompt_for
from ..pair_check import check_pair
from ..prompts import Conversation
from ..settings import GenerationSettings
from .rows import ReplayRow
from .text import replay_text


def replayable() -> tuple[str, ...]:
    """The methods ``replay`` can teacher-force (their specs say so)."""
    return tuple(m.name for m in methods.METHODS.values() if m.replays)


def replay(
    pair: ModelPair,
    conv: Conversation,
    settings: GenerationSettings,
    continuation: Sequence[int] | str,
    *,
    batched: bool = True,
    scorer: PromptScorer | None = None,
) -> Iterator[ReplayRow]:
    """Decisions along ``continuation`` (base token ids, or text tokenised by the base).

    ``batched`` evaluates the continuation in one pass with logits kept for its positions only;
    ``batched=False`` evaluates one token at a time exactly as ``generate`` does (bit-identical
    logits, so a greedy generation replays with every step matching). ``--support top100`` and a
    base on a server replay the text (:mod:`.text`); ``scorer`` keeps what a server can do.
    """
    if settings.support == "top100" or (pair.base is not None and not pair.base.capabilities.dense_logits):
        if not isinstance(continuation, str):
            raise UsageError("--support top100 and a base on a server replay a continuation's "
                             "text: give --continuation or --jsonl, not token ids")
        yield from replay_text(pair, conv, settings, continuation, batched=batched,
                               scorer=scorer)
        return
    spec = methods.get(settings.method)
    settings = spec.effective(settings)
    if not spec.replays or settings.support != "full":
        raise UsageError(
            f"replay supports methods {', '.join(replayable())} with --support full, "
            f"not {settings.method} / {settings.support}"
        )
    check_pair(pair, settings)
    base = pair.base
    assert base is not None
    for engine in (base, pair.guide, pair.anti):
        if engine is not None:
            engine.rollback(0)
    prompt = prompt_for(base, conv, role="base")
    prompt_ids = base.tokenize(prompt.text, add_bos=prompt.add_bos)
    ids = (
        base.tokenize(continuation.encode(), add_bos=False, special=False)
        if isinstance(continuation, str)
        else [int(i) for i in continuation]
    )
    if not ids:
        raise UsageError("the continuation to replay is empty")
    bad = next((i for i in ids if not 0 <= i < base.n_vocab), None)
    if bad is not None:
        raise UsageError(f"token id {bad} is not in the vocabulary of {base.name} "
                         f"(0 to {base.n_vocab - 1})")
    if len(prompt_ids) + len(ids) > base.n_ctx:
        raise ContextOverflowError(
            f"prompt + continuation are {len(prompt_ids) + len(ids)} tokens; the context is "
            f"{base.n_ctx} (raise --n-ctx)"
        )
    base.eval(prompt_ids)
    first = base.logits().copy()
    rows = base.eval_logits(ids[:-1]) if batched and len(ids) > 1 else None
    decider = Decider(pair, settings, conv, spec)
    pieces = base.pieces()
    controls = base.control_ids()
    y = b""
    for t, token in enumerate(ids):
        if t == 0:
            logits = first
        elif rows is not None:
            logits = rows[t - 1]
        else:
            base.eval([ids[t - 1]])
            logits = base.logits()
        d = decider.decide(logits, y, t)
        chosen = int(np.argmax(d.probs))
        yield ReplayRow(
            index=t, token=token, text=_text(pieces[token]), intervened=d.intervened, b=d.b,
            g=d.g, alpha=d.alpha, chosen=chosen, chosen_text=_text(pieces[chosen]),
            matches=chosen == token, provenance=provenance_of(d, chosen).value,
            p_token=float(d.probs[token]),
        )
        if token not in controls:
            y += pieces[token]


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


__all__ = ["ReplayRow", "replay", "replayable"]
