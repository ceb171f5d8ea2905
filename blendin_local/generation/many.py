"""Many answers at once: ``generate_many(pair, conversations, settings, batch=N)``.

Each answer is an ordinary :class:`~blendin_local.generation.generate.Generation` on its own *slot*: sequence
views of the pair's models (``Engine.sequences``), so each answer has its own KV cache while all of
them share one llama.cpp context per model. The scheduler advances every active answer to its next
evaluation request, then runs the requests of all answers together: one batched decode per model
(the guide's catch-ups first, since the answers waiting on them also need the base next). An answer
that ends frees its slot and the next waiting conversation takes it (continuous batching): a slot
is cleared first, or, for an answer with ``reuse_cache`` (serve), a free slot whose KV its prompt
continues is taken and only the rest is evaluated. A method whose step source evaluates by itself
(``MethodSpec.driven`` unset), or a pair without sequence views, runs one answer at a time
instead, with the same interface.

Where the driving model is on a server (spec §10), the server batches: up to ``batch`` worker
threads each run an ordinary ``Generation`` (:class:`_InFlight`), so up to ``batch`` requests are in
flight, each with the remote model's own retries, timeouts and faults. Each answer talks to its own
``RemoteModel.clone()`` (shared connection pool, its own stream state and traffic counts); a local
model in the pair (the guide) gives each worker its own sequence view, behind one lock per
llama.cpp context (a context is not thread-safe). A remote fault (server gone, stalled, refused)
ends its answer alone with its one-line error: the answers in flight finish, and the waiting ones
do not start (``run`` raises that error; eval saves the finished ones and can resume).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..engines import server_of
from ..engines.base import Engine, Eval, common_prefix_len, fits_context, group_of, run_evals, sequences_of
from ..engines.remote.engine import RemoteError
from ..errors import BlendinError, ContextOverflowError, UsageError
from ..pair import ModelPair, prompt_for
from ..prompts import Conversation
from ..settings import GenerationSettings
from .generate import Generation
from .overlap import Overlap, overlap_allowed
from .steps import Result, Step


@dataclass(frozen=True)
class Finished:
    """One conversation's answer is complete: its :class:`Result`, or the error that ended it
    alone (a prompt too long for the context, an exception in its own step source)."""

    index: int
    result: Result | None
    error: Exception | None = None


Event = tuple[int, Step] | Finished
Work = tuple[int, Conversation, GenerationSettings]  # a job for the scheduler: key, conversation, settings


DEFAULT_BATCH = 8  # on 2 CPU cores, raw batched decode gains most of its speed-up by 8 (spec §11)
UNIFIED_KV_ROLES: frozenset[str] = frozenset()  # see unified_kv


def unified_kv(role: str) -> bool:
    """Whether ``role``'s multi-sequence context keeps one KV buffer for all its sequences.

    With a KV stream per sequence llama.cpp cuts a batch into ubatches of consecutive sequence
    ids taking equally many tokens each (``split_equal``), each a full pass over the weights; a
    unified buffer takes the whole batch in one (``split_simple``). That gained ~5 % for blendin at
    B = 8 with 128-token answers (guide catch-ups are such ragged batches), but with a unified
    buffer every token's attention covers every sequence's cells (flash attention is off): with
    300-token contexts B = 8 decode steps were 11 % (Gemma) and 20 % (SmolLM2) slower, with 900
    tokens 30 % and 48 % (``scripts/kv_layout_long_context.py``; README, *KV layout*). So a
    stream per sequence for every role; ``BLENDIN_KV_UNIFIED`` (roles, comma-separated, or
    ``none``) chooses otherwise, e.g. for short-answer evals or ``scripts/kv_layout_ab.py``.
    """
    override = os.environ.get("BLENDIN_KV_UNIFIED")
    roles = UNIFIED_KV_ROLES if override is None else frozenset(override.split(","))
    return role in roles


def fitting_batch(pair: ModelPair, want: int = DEFAULT_BATCH) -> int:
    """``want``, or fewer where the models' KV caches of that many sequences would take more than
    half of the available memory (engines that can tell: ``max_sequences``)."""
    for engine in (pair.base, pair.guide, pair.anti):
        limit = getattr(engine, "max_sequences", None)
        if limit is not None:
            want = min(want, max(1, int(limit())))
    return want


def pair_sequences(pair: ModelPair, n: int,
                   roles: Collection[str] = ("base", "guide", "anti")) -> list[ModelPair] | None:
    """``n`` pairs of sequence views (one slot each) of ``pair``'s models in ``roles`` (the others
    are left out, so a batch of base-only answers opens no guide context), or None where such a
    model has no multi-sequence context."""
    engines = {"base": pair.base, "guide": pair.guide, "anti": pair.anti}
    views: dict[str, list[Engine]] = {}
    for role, engine in engines.items():
        if engine is not None and role in roles:
            seqs = sequences_of(engine, n, unified_kv=unified_kv(role))
            if seqs is None:
                return None
            views[role] = seqs

    def slot(role: str, i: int) -> Engine | None:
        seqs = views.get(role)
        return None if seqs is None else seqs[i]

    return [ModelPair(base=slot("base", i), guide=slot("guide", i), anti=slot("anti", i),
                      projection=pair.projection) for i in range(n)]


class GenerationBatch:
    """Many conversations, up to ``batch`` decoded together.

    ``settings`` is one for all, or one per conversation (an eval's whole grid runs as one batch,
    so that one setting's last long answers share decodes with the next setting's first ones).
    Iterate it for ``(index, Step)`` pairs as they are made (answers interleave), or call
    :meth:`run` for the results in input order; :meth:`stream` also yields a :class:`Finished`
    as each answer completes. ``note`` says which answers run one at a time, and why.
    """

    def __init__(self, pair: ModelPair, conversations: Sequence[Conversation],
                 settings: GenerationSettings | Sequence[GenerationSettings], *,
                 batch: int) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
        self.pair = pair
        self.conversations = list(conversations)
        if isinstance(settings, GenerationSettings):
            self.job_settings = [settings] * len(self.conversations)
        else:
            self.job_settings = list(settings)
            if len(self.job_settings) != len(self.conversations):
                raise ValueError("one settings per conversation, or one for all")
        self.settings = self.job_settings[0] if self.job_settings else GenerationSettings()
        self.batch = batch
        self.results: list[Result | None] = [None] * len(self.conversations)
        self.errors: list[Exception | None] = [None] * len(self.conversations)
        self._cancelled = False
        self.overlapped = False  # did batched answers' guides catch up beside the base?
        self._active_gens: list[Generation] = []
        self._scheduler: _Scheduler | None = None
        self._slots: list[ModelPair] | None = None
        self._in_flight: _InFlight | None = None
        notes: list[str] = []
        roles: set[str] = set()  # the models the scheduled answers run
        self._scheduled, self._flying, self._alone = self._classify(notes, roles)
        if self._scheduled:
            self._slots = pair_sequences(pair, min(batch, len(self._scheduled)), roles)
            if self._slots is None:
                notes.append("a model has no multi-sequence context (a server): one answer at a time")
                self._alone, self._scheduled = sorted(self._alone + self._scheduled), []
        if self._flying:
            self._in_flight = _InFlight.of(self, min(batch, len(self._flying)), self._flying)
            if self._in_flight is None:
                notes.append("a local model has no multi-sequence context: one answer at a time")
                self._alone, self._flying = sorted(self._alone + self._flying), []
        self.note = "; ".join(notes)

    def _classify(self, notes: list[str], roles: set[str]) -> tuple[list[int], list[int], list[int]]:
        """Indices of the answers for the scheduler (local driving model, a driven step source),
        for requests in flight (a driving model on a server) and to run one at a time; adds the
        scheduled answers' model roles to ``roles``."""
        scheduled: list[int] = []
        flying: list[int] = []
        alone: list[int] = []
        kinds: dict[GenerationSettings, list[int]] = {}
        for first in _firsts(range(len(self.conversations)), self.job_settings):
            s = self.job_settings[first]
            probe = Generation(self.pair, self.conversations[first], s)
            driver = self.pair.base if probe.spec.drives == "base" else self.pair.guide
            if driver is not None and not driver.capabilities.kv_cache:  # on a server
                many = self.batch > 1 and len(self.conversations) > 1
                kinds[s] = flying if many else alone
            elif probe.batches:
                kinds[s] = scheduled
                roles.update(probe.spec.roles)
            else:
                kinds[s] = alone
                if self.batch > 1:
                    notes.append(f"method {s.method} (support {s.support}) evaluates by itself: "
                                 "one answer at a time")
        for i, s in enumerate(self.job_settings):
            kinds[s].append(i)
        return scheduled, flying, alone

    @property
    def batched(self) -> bool:
        return self._slots is not None or self._in_flight is not None

    def cancel(self) -> None:
        """End every answer before its next token; waiting conversations do not start."""
        self._cancelled = True
        running = self._scheduler.generations() if self._scheduler is not None else self._active_gens
        for gen in running:
            gen.cancel()

    def __iter__(self) -> Iterator[tuple[int, Step]]:
        for event in self.stream():
            if not isinstance(event, Finished):
                yield event

    def run(self) -> list[Result]:
        """Every answer's :class:`Result`, in input order; the first error, if any, is raised after
        all other answers are done."""
        for _ in self.stream():
            pass
        for error in self.errors:
            if error is not None:
                raise error
        return [r for r in self.results if r is not None]

    def stream(self) -> Iterator[Event]:
        if self._in_flight is not None:
            yield from self._in_flight.run()
        if self._slots is not None:
            yield from self._schedule(self._slots)
        yield from self._one_at_a_time(self._alone)

    def _schedule(self, slots: list[ModelPair]) -> Iterator[Event]:
        waiting = deque((i, self.conversations[i], self.job_settings[i]) for i in self._scheduled)

        def take() -> Work | None:
            return waiting.popleft() if waiting and not self._cancelled else None

        self._scheduler = _Scheduler(slots, take)
        self.overlapped = self._scheduler.overlap is not None
        for event in self._scheduler.run():
            if isinstance(event, Finished):
                self.results[event.index], self.errors[event.index] = event.result, event.error
            yield event
        self._scheduler = None

    def _finish(self, index: int, gen: Generation, error: BlendinError | None) -> Finished:
        if error is None:
            self.results[index] = gen.result
        self.errors[index] = error
        return Finished(index, self.results[index], error)

    def _one_at_a_time(self, indices: list[int]) -> Iterator[Event]:
        for index in indices:
            if self._cancelled:
                return
            gen = Generation(self.pair, self.conversations[index], self.job_settings[index])
            self._active_gens = [gen]
            try:
                for step in gen:
                    yield index, step
            except ContextOverflowError as exc:
                yield self._finish(index, gen, exc)
                continue
            yield self._finish(index, gen, None)


def _firsts(indices: Iterable[int], settings: Sequence[GenerationSettings]) -> list[int]:
    """The first index of each distinct settings among ``indices``."""
    seen: dict[GenerationSettings, int] = {}
    for i in indices:
        seen.setdefault(settings[i], i)
    return list(seen.values())


@dataclass
class SlotMemory:
    """The scheduler's slots between its runs, for a caller whose slots keep their KV (serve):
    the free ones, free longest first, and each kept slot's last prompt length (its driving
    model's tokens), by which a new prompt that continues it is recognised."""

    free: list[int]
    prompts: dict[int, int] = field(default_factory=dict)


class _Scheduler:
    """Continuous batching over slots (see the module docstring), fed by ``take``: called whenever
    a slot is free, it gives the next job ``(key, conversation, settings)`` or None (none now). The
    jobs of one run may differ in settings and method, as long as each one batches. :meth:`run`
    yields ``(key, Step)`` and a :class:`Finished` per job, and returns once no job is active and
    ``take`` gives none; ``started`` sees each job's :class:`Generation` before its first step, and
    ``before_decode`` is called before each batched decode (a server hands the steps made since the
    last one to its clients there, in one go, while the decode runs without the GIL).

    An exception in one answer's own step source (or its Generation's set-up, or a decode that
    held its request) ends that answer alone, with that error; its slot is cleared and taken again.
    """

    def __init__(self, slots: list[ModelPair], take: Callable[[], Work | None], *,
                 started: Callable[[int, Generation], None] | None = None,
                 memory: SlotMemory | None = None,
                 before_decode: Callable[[], None] | None = None) -> None:
        self.slots = slots
        self.take = take
        self.started = started
        self.before_decode = before_decode
        self.memory = memory or SlotMemory(list(range(len(slots))))
        self.free = self.memory.free
        self.active: dict[int, tuple[int, Generation, Generator[Step | Eval, None, None]]] = {}
        self.pending: dict[int, Eval] = {}
        # each slot's driving model (the base, or the guide for the guide baseline), by group key
        self.drivers: dict[int, int] = {}
        # the guide's catch-ups beside the base's decodes (Eval.beside), where the cores allow
        self.overlap = Overlap() if slots and overlap_allowed(slots[0]) else None

    def generations(self) -> list[Generation]:
        """The answers running now (cancel them from another thread: they end at the next token)."""
        return [gen for _, gen, _ in list(self.active.values())]

    def run(self) -> Iterator[Event]:
        try:
            yield from self._run()
        finally:
            if self.overlap is not None:
                self.overlap.close()

    def _run(self) -> Iterator[Event]:
        yield from self._fill()
        while self.pending:
            by_group: dict[int, list[int]] = {}
            catch_up: set[int] = set()  # groups holding a request for a model that does not drive
            for slot, request in self.pending.items():
                key = _key(request.engine)
                by_group.setdefault(key, []).append(slot)
                if key != self.drivers[slot]:
                    catch_up.add(key)
            # Catch-ups first (the guide at the answers' interventions): those answers then join
            # the next decode of the driving model with all the others, one decode per token.
            key = max(catch_up, key=lambda k: len(by_group[k])) if catch_up else \
                max(by_group, key=lambda k: len(by_group[k]))
            slots = by_group[key]
            requests = {slot: self.pending.pop(slot) for slot in slots}
            failed: dict[int, Exception] = {}
            for slot, r in requests.items():
                if not fits_context(r):
                    failed[slot] = ContextOverflowError.of(
                        r.engine.name, len(r.engine.tokens) + len(r.ids), r.engine.n_ctx)
            if self.before_decode is not None:
                self.before_decode()
            running = [r for slot, r in requests.items() if slot not in failed]
            try:
                if self.overlap is not None:
                    self.overlap.run(partial(run_evals, running), running)
                else:
                    run_evals(running)
            except Exception as exc:  # noqa: BLE001 - the decode failed: so did each answer in it
                failed.update({slot: exc for slot in slots if slot not in failed})
            for slot in slots:
                yield from self._resume(slot, failed.get(slot))
            yield from self._fill()

    def _fill(self) -> Iterator[Event]:
        while self.free:
            work = self.take()
            if work is None:
                return
            index, conv, settings = work
            slot = self._free_slot(conv, settings)
            pair = self.slots[slot]
            try:
                gen = Generation(pair, conv, settings)
            except Exception as exc:  # noqa: BLE001 - this job's settings do not run: it alone ends
                self.free.insert(0, slot)
                yield Finished(index, None, exc)
                continue
            driver = pair.base if gen.spec.drives == "base" else pair.guide
            assert driver is not None
            self.drivers[slot] = _key(driver)
            self.active[slot] = (index, gen, gen.events())
            if self.started is not None:
                self.started(index, gen)
            yield from self._resume(slot, None)

    def _free_slot(self, conv: Conversation, settings: GenerationSettings) -> int:
        """A free slot for a new answer: with ``reuse_cache``, one whose KV the new prompt
        continues (it starts with that slot's whole previous prompt: a chat's next turn finds its
        history, and another chat with the same system prompt does not evict it) where there is
        one, the longest shared first; else the one free longest."""
        if settings.reuse_cache and len(self.free) > 1:
            def shared(slot: int) -> int:
                pair = self.slots[slot]
                engine = pair.base if pair.base is not None else pair.guide
                previous = self.memory.prompts.get(slot)
                if engine is None or previous is None:
                    return 0
                prompt = prompt_for(engine, conv, role="base" if engine is pair.base else "guide")
                n = common_prefix_len(engine.tokens, engine.tokenize(prompt.text, add_bos=prompt.add_bos))
                return n if n >= previous else 0

            best = max(self.free, key=shared)
            if shared(best):
                self.free.remove(best)
                return best
        return self.free.pop(0)

    def _resume(self, slot: int, error: Exception | None) -> Iterator[Event]:
        """Advance one answer to its next request (or its end), yielding its steps."""
        index, gen, events = self.active[slot]
        try:
            event = events.throw(error) if error is not None else next(events)
            while not isinstance(event, Eval):
                yield index, event
                event = next(events)
            self.pending[slot] = event
            return
        except StopIteration:
            finished = Finished(index, gen.result, None)
        except Exception as exc:  # noqa: BLE001 - this answer's own failure (a prompt too long…)
            finished = Finished(index, None, exc)
        del self.active[slot]
        if gen.settings.reuse_cache and finished.error is None:  # the next answer may reuse its KV
            self.memory.prompts[slot] = gen.prompt_tokens
        else:
            self.memory.prompts.pop(slot, None)
            for engine in (self.slots[slot].base, self.slots[slot].guide, self.slots[slot].anti):
                if engine is not None:
                    engine.rollback(0)
        self.free.append(slot)
        yield finished


class _Stopped(Exception):
    """Internal: the batch is over (done, cancelled or interrupted); a worker still running must
    not touch a local context any more."""


class _Locked:
    """A sequence view of a local model used from several threads: every call holds its
    context's lock, and ``logits()`` is a copy (another thread's decode may overwrite the row)."""

    def __init__(self, view: Engine, lock: threading.Lock, closed: threading.Event) -> None:
        self._view = view
        self._lock = lock
        self._closed = closed

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed.is_set():
                raise _Stopped
            return getattr(self._view, name)(*args, **kwargs)

    def eval(self, ids: Sequence[int]) -> None:
        self._call("eval", ids)

    def eval_logits(self, ids: Sequence[int]) -> Any:
        return self._call("eval_logits", ids)

    def rollback(self, n: int) -> None:
        self._call("rollback", n)

    def logits(self) -> Any:
        with self._lock:
            if self._closed.is_set():
                raise _Stopped
            return self._view.logits().copy()

    def tokenize(self, text: bytes, *, add_bos: bool = False, special: bool = True) -> list[int]:
        result: list[int] = self._call("tokenize", text, add_bos=add_bos, special=special)
        return result

    def top_logprobs(self, prompt: str, k: int) -> Any:
        return self._call("top_logprobs", prompt, k)

    @property
    def tokens(self) -> list[int]:
        with self._lock:
            return list(self._view.tokens)

    def __getattr__(self, name: str) -> Any:  # names, sizes, vocabulary: read-only
        return getattr(self._view, name)


class _InFlight:
    """Up to ``batch`` answers at once against a server: one worker thread per slot, each running
    ordinary ``Generation``s one after another (see the module docstring). Steps reach the caller
    through one queue; results are kept in input order by the owner."""

    def __init__(self, owner: GenerationBatch, make_slot: list[Any], indices: list[int]) -> None:
        self.owner = owner
        self.make_slot = make_slot  # per slot: a function making a fresh pair for one answer
        self.indices = indices  # the owner's answers this runs
        self.closed = threading.Event()

    @classmethod
    def of(cls, owner: GenerationBatch, n: int, indices: list[int]) -> _InFlight | None:
        """Slots for ``n`` workers, or None where a local model has no sequence views."""
        pair = owner.pair
        closed = threading.Event()
        views: dict[str, list[Engine] | None] = {}
        for role, engine in (("base", pair.base), ("guide", pair.guide), ("anti", pair.anti)):
            if engine is None or not engine.capabilities.kv_cache:
                continue
            seqs = sequences_of(engine, n, unified_kv=unified_kv(role))
            if seqs is None:
                return None
            lock = threading.Lock()  # one per llama.cpp context
            views[role] = [_Locked(v, lock, closed) for v in seqs]  # type: ignore[misc]

        def engine_for(role: str, engine: Engine | None, i: int) -> Engine | None:
            if engine is None:
                return None
            if not engine.capabilities.kv_cache:  # stateless: one handle per worker
                return server_of(engine).clone()  # type: ignore[return-value]
            seqs = views[role]
            assert seqs is not None
            return seqs[i]

        def maker(i: int) -> Any:
            return lambda: ModelPair(base=engine_for("base", pair.base, i),
                                     guide=engine_for("guide", pair.guide, i),
                                     anti=engine_for("anti", pair.anti, i),
                                     projection=pair.projection)

        runner = cls(owner, [maker(i) for i in range(n)], indices)
        runner.closed = closed
        return runner

    def run(self) -> Iterator[Event]:
        owner = self.owner
        waiting: queue.Queue[tuple[int, Conversation]] = queue.Queue()
        for index in self.indices:
            waiting.put((index, owner.conversations[index]))
        events: queue.Queue[Any] = queue.Queue()
        gens: dict[int, Generation] = {}
        lock = threading.Lock()
        faulted = threading.Event()  # a server fault: answers in flight finish, no new ones start

        def work(slot: int) -> None:
            try:
                while not owner._cancelled and not self.closed.is_set() and not faulted.is_set():
                    try:
                        index, conv = waiting.get_nowait()
                    except queue.Empty:
                        return
                    gen = Generation(self.make_slot[slot](), conv, owner.job_settings[index])
                    with lock:
                        gens[index] = gen
                        owner._active_gens = list(gens.values())
                    error: BlendinError | None = None
                    try:
                        for step in gen:
                            events.put((index, step))
                    except ContextOverflowError as exc:  # this answer's alone
                        error = exc
                    except RemoteError as exc:  # this answer's alone; no new answers start
                        error = exc
                        faulted.set()
                    with lock:
                        del gens[index]
                        owner._active_gens = list(gens.values())
                    events.put(_Done(index, gen, error))
            except _Stopped:
                return
            except BaseException as exc:  # a bug or a failure that is not one answer's: re-raise
                events.put(_Crash(exc))
            finally:
                events.put(_Exit())

        workers = [threading.Thread(target=work, args=(slot,), daemon=True,
                                    name=f"blendin-answer-{slot}")
                   for slot in range(len(self.make_slot))]
        for w in workers:
            w.start()
        running = len(workers)
        finished = False
        try:
            while running:
                try:
                    event = events.get(timeout=0.2)  # a timeout keeps Ctrl-C prompt
                except queue.Empty:
                    continue
                if isinstance(event, _Exit):
                    running -= 1
                elif isinstance(event, _Crash):
                    raise event.exc
                elif isinstance(event, _Done):
                    yield owner._finish(event.index, event.gen, event.error)
                else:
                    yield event
            finished = True
        finally:
            if not finished:  # Ctrl-C, an error, or the caller stopped iterating: end every answer
                owner.cancel()
            self.closed.set()
            with lock:
                for gen in gens.values():
                    gen.cancel()
            for w in workers:
                w.join(timeout=1.0)  # a worker blocked on a stalled server ends by its timeout


@dataclass(frozen=True)
class _Done:
    index: int
    gen: Generation
    error: BlendinError | None


@dataclass(frozen=True)
class _Crash:
    exc: BaseException


class _Exit:
    pass


def _key(engine: Engine) -> int:
    """Requests with the same key can share a decode: views of one multi-sequence context."""
    return id(group_of(engine) or engine)


def generate_many(pair: ModelPair, conversations: Sequence[Conversation],
                  settings: GenerationSettings | Sequence[GenerationSettings], *,
                  batch: int = 8) -> GenerationBatch:
    """Answer many conversations (one settings for all, or one per conversation), ``batch`` of
    them decoded together.

    Iterate the returned :class:`GenerationBatch` for ``(index, Step)`` pairs, or call ``.run()``
    for the :class:`Result` of each conversation in input order. With greedy settings each answer
    equals ``generate``'s for that conversation except where llama.cpp's batched arithmetic moves a
    near-tie (spec §11).
    """
    return GenerationBatch(pair, conversations, settings, batch=batch)
