"""The decoding loop's skeleton, once, for every method and every kind of engine (:func:`drive`).

A method supplies *decisions*; the driver owns the rest: the token limit, cancel, a full context,
end-of-generation (``eos`` / ``guide-eos``), stop strings and the held-back text they need, the
driving model's time, and turning each decision into a :class:`Step` record.

**Shape.** For each step index the method gives a lazy iterator of *items* (:data:`PicksAt`):

- :class:`~blendin_local.engines.base.Eval` requests ("evaluate these ids on this model"), which the
  driver passes on to whoever drives it: run at once for one answer (``generate.Generation``), or
  gathered across answers into one batched decode (``many.GenerationBatch``);
- :class:`Pick` s, each one token of the answer (a token id of the driving model, or a piece of text
  where the method works on strings) with the function that describes its step;
- an :class:`End`: the answer ends here without a step (a server ended the text).

One iterator may give **several picks per model call**: a remote base's confident run streams a
chunk of positions, a nudge accepts several guide tokens (and speculative drafts would). The driver
consumes picks until a stop, the limit or a cancel, and then *closes* the iterator, so a stream that
a method holds open in a ``with`` block (or ``try/finally``) is closed exactly at the step where the
answer ended; an iterator that runs out is simply asked again from the next index.

Why this shape and not callbacks: a method's decision at one step is naturally sequential code
("stream the base until unsure, then ask the guide, then read on"), and a generator keeps that code
as it reads while the driver keeps every rule about ending an answer. Requests stay data (``Eval``),
so batching many answers is the caller's business and no method knows about it (as in mlx-lm, where
``generate_step`` and ``speculative_generate_step`` yield the same thing and ``stream_generate``
alone owns stopping and stats).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from ..engines.base import Engine, Eval, Requests
from .decoding import Decoding
from .steps import Provenance, Step, StopReason

Event = Step | Eval  # what a step source yields


@dataclass(frozen=True)
class Pick:
    """One token of the answer, as a method decided it.

    Attributes:
        describe: builds the step record from the text to show and the driving model's seconds for
            this position, as the driver timed it (its own evaluation of the previous token, or of
            the prompt; 0.0 where the method evaluates the model itself and times that).
        token: an id of the driving model (``drive``'s ``engine``): an end-of-generation id ends the
            answer, a control id adds no text (:meth:`Decoding.take`). None: ``piece`` is the text.
        piece: the text the pick adds, where ``token`` is None (a string method, a server).
        by_guide: an end chosen here was the guide's doing (``guide-eos`` rather than ``eos``).
        ends: the answer ends after ``piece`` (an empty string chosen, a server's last token).
    """

    describe: Callable[[str, float], Step]
    token: int | None = None
    piece: bytes = b""
    by_guide: bool = False
    ends: bool = False


@dataclass(frozen=True)
class End:
    """The answer ends before the next pick, with no step of its own (a server ended the text, the
    guide ended its turn with its whole draft accepted)."""

    reason: StopReason


Item = Eval | Pick | End
Picks = Generator[Item, None, None]
PicksAt = Callable[[int], Picks]  # the next step's index -> the picks from there on


def drive(gen: Decoding, picks_at: PicksAt, *, engine: Engine | None = None,
          evaluate_as: str | None = None,
          beside: Callable[[], list[Requests[Any]]] | None = None) -> Iterator[Event]:
    """The answer, a step per pick of ``picks_at``.

    Args:
        engine: the driving model where it runs here: pick tokens are its ids, and its context must
            have room for what is evaluated next (else the answer ends ``context-full``).
        evaluate_as: the role whose prompt the driver puts in ``engine`` first; then it evaluates
            each picked token on ``engine`` itself (as a request), before the step is yielded. None:
            the method keeps ``engine`` on the answer itself (a ``TextSync``), or it is a server.
        beside: the method's work on its other models that may run during those evaluations (the
            guide catching up with the answer so far: ``Eval.beside``), called with the pick
            already in the answer text.
    """
    t_model = 0.0  # the driving model's seconds for the next position, where the driver evaluates it
    if evaluate_as is not None:
        assert engine is not None
        t0 = time.perf_counter()
        prefill = gen.prefill_requests(engine, evaluate_as)
        while True:
            try:
                request = next(prefill)
            except StopIteration:
                break
            request.beside = beside
            yield request
        t_model = time.perf_counter() - t0
    limit = gen.settings.max_tokens
    index = 0
    while index < limit and not _halted(gen, None if evaluate_as else engine):
        with contextlib.closing(picks_at(index)) as items:
            for item in items:
                if isinstance(item, Eval):
                    yield item
                    continue
                if isinstance(item, End):  # held-back text joins the answer; there is no step to show it
                    gen.stop_reason = item.reason
                    gen.output.finish()
                    return
                step = item.describe(_take(gen, engine, item, index), t_model)
                index += 1
                if evaluate_as is not None and gen.stop_reason is None and index < limit:
                    assert engine is not None and item.token is not None
                    if not _room_left(engine):
                        gen.stop_reason = StopReason.CONTEXT_FULL
                    else:
                        request = Eval(engine, [item.token], beside=beside)
                        yield request
                        t_model = request.seconds
                yield step
                if gen.stop_reason is not None or index >= limit or _halted(gen, None):
                    return


def _halted(gen: Decoding, engine: Engine | None) -> bool:
    """A cancel ends the answer before its next pick; so does a full context of ``engine`` (the
    driving model a method keeps on the answer itself)."""
    if gen.cancelled:
        gen.stop_reason = StopReason.CANCELLED
    elif engine is not None and not _room_left(engine):
        gen.stop_reason = StopReason.CONTEXT_FULL
    return gen.stop_reason is not None


def _room_left(engine: Engine) -> bool:
    return len(engine.tokens) < engine.n_ctx


def _take(gen: Decoding, engine: Engine | None, pick: Pick, index: int) -> str:
    """Add ``pick`` to the answer; returns the text to show for its step. An end-of-generation id
    ends the answer (``guide-eos`` where the guide chose it), a control id adds no text; a text
    piece that ``ends`` ends it after the piece."""
    if pick.token is not None:
        assert engine is not None
        if pick.token in engine.eog_ids():
            return _end(gen, pick)
        controls = engine.control_ids()
        return _push(gen, b"" if pick.token in controls else engine.pieces()[pick.token], index)
    text = _push(gen, pick.piece, index)
    if pick.ends and gen.stop_reason is None:
        text += _end(gen, pick)
    return text


def _end(gen: Decoding, pick: Pick) -> str:
    """End the answer at ``pick`` (``guide-eos`` where the guide chose the end); returns the
    held-back text that joins it."""
    gen.stop_reason = StopReason.GUIDE_EOS if pick.by_guide else StopReason.EOS
    return gen.output.finish()


def _push(gen: Decoding, piece: bytes, index: int) -> str:
    """Add bytes to the answer; returns the text to show for this step, noting a stop string, and
    flushing held-back text at the token limit."""
    text = gen.output.push(piece)
    if gen.output.stopped:
        gen.stop_reason = StopReason.STOP_STRING
    elif index + 1 >= gen.settings.max_tokens:
        text += gen.output.finish()
    return text


def own_pick(gen: Decoding, engine: Engine, index: int, provenance: Provenance,
             *, t_model: float | None = None) -> Pick:
    """Sample ``engine``'s own next token (no blending). ``t_model``: the model's seconds for this
    position where the method timed them (None: the driver's)."""
    t0 = time.perf_counter()
    token, describe = gen.own_choice(engine, index, provenance)
    t_choose = time.perf_counter() - t0

    def step(text: str, t_driver: float) -> Step:
        return describe(text, t_driver if t_model is None else t_model, t_choose)

    return Pick(step, token=token)


def own_picks(gen: Decoding, engine: Engine, provenance: Provenance) -> PicksAt:
    """Every token from ``engine``'s own distribution (the ``guide`` baseline)."""

    def picks_at(index: int) -> Picks:
        yield own_pick(gen, engine, index, provenance)

    return picks_at

