"""Replay along a continuation's *text*: ``--support top100`` and any base on a server (spec §3, §6).

**The steps of a text continuation.** The top-100 mode re-tokenises prompt + answer at every step, so
a step is a piece of text, not a token id. The steps are the base's canonical tokenisation of
prompt + continuation: step t starts where one of those tokens ends, and its next piece runs to the
next token end. Step 0 starts at the end of the prompt even when the first token straddles the seam
(``"Answer:"`` + ``" 4"`` tokenised together as ``":"``, ``" 4"`` gives a first piece ``"4"``...
only when the prompt ends in the space), and a token end inside a UTF-8 character is no boundary (the
servers' strings cannot split a character). At step t each model reads the canonical tokenisation
of its own prefix + the continuation up to t — what top-100 generation feeds it.

With a base on a server the tokenisation is the server's, read from **one** request that scores the
whole text (``echo`` + ``logprobs``: vLLM answers it from its prompt logprobs, llama-cpp-python's
server from its kept logits). A server that cannot score a prompt (llama.cpp's native server refuses
``echo``) is asked once per step; then the next piece is the longest of the base's top-k strings that
the rest of the continuation starts with (one character if none does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .. import blend, methods
from ..engines import server_of
from ..engines.base import Engine, decoded_strings, set_tokens
from ..engines.remote.engine import RemoteModel
from ..engines.remote.scoring import PromptScorer
from ..errors import BlendinError, ContextOverflowError, UsageError
from ..generation.sync import TextSync
from ..methods.gate import gate_open
from ..methods.strings import (
    TOP,
    string_distribution,
    string_intervention,
    top_string,
)
from ..pair import ModelPair, prompt_for
from ..prompts import Conversation
from ..settings import GenerationSettings
from .rows import ReplayRow

# The methods that run on top-k strings (those with a step source over a remote base).
TEXT_METHODS = tuple(sorted(m.name for m in methods.METHODS.values() if m.replays_text))


@dataclass(frozen=True)
class BaseView:
    """The base at one step: where it starts, the continuation's next piece, and its top-k."""

    start: int  # characters of the continuation already read
    piece: str
    strings: dict[str, float]  # {string: probability}, later duplicates overwriting
    b: float  # the base's top-1 probability (the gate's input)
    top: str  # the string the base alone would pick (greedy)


GuideFn = Callable[[str], tuple[dict[str, float], float]]


def check_text_replay(pair: ModelPair, settings: GenerationSettings) -> None:
    if settings.method not in TEXT_METHODS:
        raise UsageError(f"replay with --support top100 or a base on a server supports methods "
                         f"{', '.join(TEXT_METHODS)}, not {settings.method}")
    if settings.support != "top100" and settings.method != "base":
        base = pair.base
        where = base.where if base is not None else "a server"
        raise UsageError(f"method {settings.method} --support full needs full distributions; the "
                         f"base at {where} gives top-{TOP} logprobs: use --support top100")
    if settings.method != "base" and pair.guide is None:
        raise UsageError(f"method {settings.method!r} needs a guide model (--guide)")


def replay_text(
    pair: ModelPair,
    conv: Conversation,
    settings: GenerationSettings,
    continuation: str,
    *,
    batched: bool = True,
    scorer: PromptScorer | None = None,
) -> Iterator[ReplayRow]:
    """Top-100 string decisions along ``continuation`` (see the module docstring for the steps).

    ``batched``: one evaluation (local) or one scoring request (server) for the whole text where
    possible; else one per step, exactly as generation reads it. ``scorer`` remembers across items
    whether a server can score prompts (one is made if not given).
    """
    s = methods.get(settings.method).effective(settings)
    check_text_replay(pair, s)
    if not continuation:
        raise UsageError("the continuation to replay is empty")
    base = pair.base
    assert base is not None
    prefix = prompt_for(base, conv, role="base")
    if not base.capabilities.dense_logits:
        scorer = scorer or PromptScorer(server_of(base))
        views = remote_views(scorer, prefix.text.decode("utf-8", errors="replace"), continuation,
                             batched=batched)
    else:
        views = local_views(base, prefix.text, prefix.add_bos, continuation, batched=batched)
    guide = guide_strings(pair, conv) if s.method != "base" else None
    interventions = 0
    for index, v in enumerate(views):
        if guide is None or not gate_open(v.b, s.gamma, s.cap, interventions, index):
            yield _row(index, v, v.top, intervened=False, g=None, alpha=None,
                       provenance="base", p_token=v.strings.get(v.piece, 0.0))
            continue
        interventions += 1
        gd, g = guide(continuation[: v.start])
        sb = string_intervention(v.strings, gd, v.b, g, s.alpha)
        yield _row(index, v, sb.chosen, intervened=True, g=g, alpha=sb.alpha,
                   provenance=sb.provenance.value, p_token=sb.mixed.get(v.piece, 0.0))


def _row(index: int, v: BaseView, chosen: str, *, intervened: bool, g: float | None,
         alpha: float | None, provenance: str, p_token: float) -> ReplayRow:
    return ReplayRow(index=index, token=-1, text=v.piece, intervened=intervened, b=v.b, g=g,
                     alpha=alpha, chosen=-1, chosen_text=chosen, matches=chosen == v.piece,
                     provenance=provenance, p_token=p_token)


# --- the base along the text ----------------------------------------------------------------------
def _view(start: int, piece: str, p: np.ndarray, strings: list[str]) -> BaseView:
    return BaseView(start, piece, string_distribution(p, strings), float(p.max()),
                    strings[int(np.argmax(p))])


def local_views(base: Engine, prefix: bytes, add_bos: bool, continuation: str, *,
                batched: bool) -> Iterator[BaseView]:
    """The base's distributions at every step, from its KV cache."""
    cont = continuation.encode()
    full = base.tokenize(prefix + cont, add_bos=add_bos)
    if len(full) > base.n_ctx:
        raise ContextOverflowError(f"prompt + continuation are {len(full)} tokens; the context is "
                                   f"{base.n_ctx} (raise --n-ctx)")
    pieces = base.pieces()
    strings = decoded_strings(pieces, base.control_ids())
    bounds = _byte_bounds(full, pieces, prefix, cont, skip_first=add_bos)
    sync = TextSync(base, prefix, add_bos=add_bos)
    base.rollback(0)
    rows: dict[int, np.ndarray] = {}  # logits after the first L tokens of ``full``, by L
    if batched:
        start = max(_common(sync.canonical(b""), full), 1)
        base.eval(full[:start])
        rows[start] = base.logits().copy()
        if len(full) - 1 > start:
            for j, row in enumerate(base.eval_logits(full[start:-1]), start=start + 1):
                rows[j] = row
    for t in range(len(bounds) - 1):
        y = cont[: bounds[t]]
        if batched:
            ids = sync.canonical(y)
            logits = rows.get(len(ids)) if ids == full[: len(ids)] else None
            if logits is None:  # this prefix is not tokenised as the whole text is: read it alone
                set_tokens(base, ids)
                logits = base.logits()
        else:
            sync.update(y)
            logits = base.logits()
        piece = cont[bounds[t]: bounds[t + 1]].decode("utf-8")
        yield _view(len(y.decode("utf-8")), piece, blend.softmax(logits), strings)


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, z in zip(a, b, strict=False):
        if x != z:
            break
        n += 1
    return n


def _byte_bounds(full: list[int], pieces: list[bytes], prefix: bytes, cont: bytes, *,
                 skip_first: bool) -> list[int]:
    """Step starts as byte offsets into ``cont``, then ``len(cont)``."""
    pos, ends = 0, []
    for i, t in enumerate(full):
        if not (skip_first and i == 0):
            pos += len(pieces[t])
        ends.append(pos)
    if pos != len(prefix) + len(cont):
        raise BlendinError("the base's token pieces do not spell prompt + continuation, so the "
                           "text cannot be cut into steps (a tokenizer that adds a space prefix?)")
    inside = [e - len(prefix) for e in ends if len(prefix) < e < len(prefix) + len(cont)]
    return [0, *(k for k in inside if not 0x80 <= cont[k] < 0xC0), len(cont)]


def remote_views(scorer: PromptScorer, prefix: str, continuation: str, *,
                 batched: bool) -> Iterator[BaseView]:
    """The base's distributions at every step, from its server: one scoring request where the
    server can score a prompt, else one request per step."""
    scored = scorer.score(prefix + continuation) if batched else None
    if scored is None:
        yield from _per_step_views(scorer.model, prefix, continuation)
        return
    p, end = len(prefix), len(prefix) + len(continuation)
    at = {off: top for off, top in scored if p <= off < end}
    bounds = [0, *sorted(off - p for off in at if off > p), len(continuation)]
    for t in range(len(bounds) - 1):
        top = at.get(p + bounds[t])
        if top is None:  # a token straddles the prompt's end: ask about the prompt alone
            position = scorer.model.next_position(prefix, logprobs=TOP)
            top = position.top if position is not None else {"": 0.0}
        yield _remote_view(bounds[t], continuation[bounds[t]: bounds[t + 1]], top)


def _per_step_views(model: RemoteModel, prefix: str, continuation: str) -> Iterator[BaseView]:
    start = 0
    while start < len(continuation):
        position = model.next_position(prefix + continuation[:start], logprobs=TOP)
        # None: the server ended the text there (its end of text, an empty string)
        top = position.top if position is not None else {"": 0.0}
        rest = continuation[start:]
        fits = [s for s in top if s and rest.startswith(s)]
        piece = max(fits, key=len) if fits else rest[0]
        yield _remote_view(start, piece, top)
        start += len(piece)


def _remote_view(start: int, piece: str, top: dict[str, float]) -> BaseView:
    strings = {s: math.exp(lp) for s, lp in top.items()}
    best = top_string(strings)
    return BaseView(start, piece, strings, strings[best], best)


# --- the guide at an intervention -----------------------------------------------------------------
def guide_strings(pair: ModelPair, conv: Conversation) -> GuideFn:
    """``y -> (guide's top-100 {string: prob}, its top-1 probability)``, local or on a server."""
    guide = pair.guide
    assert guide is not None
    gp = prompt_for(guide, conv, role="guide")
    if not guide.capabilities.dense_logits:
        remote, prefix = server_of(guide), gp.text.decode("utf-8", errors="replace")

        def ask(y: str) -> tuple[dict[str, float], float]:
            position = remote.next_position(prefix + y, logprobs=TOP)
            probs = position.probs() if position is not None else {"": 1.0}
            return probs, max(probs.values())

        return ask
    sync = TextSync(guide, gp.text, add_bos=gp.add_bos, lstrip_answer=gp.templated)
    strings = decoded_strings(guide.pieces(), guide.control_ids())

    def read(y: str) -> tuple[dict[str, float], float]:
        sync.update(y.encode())
        p = blend.softmax(guide.logits())
        return string_distribution(p, strings), float(p.max())

    return read
