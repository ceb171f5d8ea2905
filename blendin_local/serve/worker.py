"""One decoding thread per loaded pair, fed by a bounded queue.

llama.cpp contexts are not thread-safe and a pair's KV caches are shared state, so every
generation runs on this one thread. With ``parallel`` 1 the jobs run one after the other on the
pair (KV reuse across requests). With ``parallel`` N > 1 they run on the many-answers scheduler
(``many._Scheduler``) over N slots (sequence views of the pair's models): a waiting job takes a
free slot at the next step (with KV reuse, a slot whose cache its prompt continues: a chat's next
turn finds its history there), a cancelled one frees its slot at its next token, and a failing one
ends alone. A job whose method cannot batch (one whose local step source evaluates by itself:
none of today's methods) waits until the running ones finish and then runs alone on the pair.
Requests wait their turn in the queue either way. Each job streams its events back to the asyncio
loop of the request that submitted it; batched jobs' events go in one hand-off per loop and batched
decode (:class:`Outbox`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BlendinError
from ..generation.generate import Generation, generate
from ..generation.many import Finished, SlotMemory, Work, _Scheduler, pair_sequences
from ..pair import ModelPair
from ..prompts import Conversation
from ..settings import GenerationSettings

log = logging.getLogger("blendin_local.serve")

GenerateFn = Callable[[ModelPair, Conversation, GenerationSettings], Generation]


class QueueFull(Exception):
    """Every queue slot is taken."""


@dataclass(frozen=True)
class Event:
    """``kind``: "start" (the worker took the job), "step" (a ``Step``), "done" (the finished
    ``Generation``) or "error" (the exception that ended it)."""

    kind: str
    payload: Any = None


@dataclass
class Job:
    conv: Conversation
    settings: GenerationSettings
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    submitted: float = field(default_factory=time.monotonic)
    generation: Generation | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, kind: str, payload: Any = None) -> None:
        """Called on the worker thread: hand the event to the request's loop."""
        _hand_over(self.loop, [(self, Event(kind, payload))])

    def cancel(self) -> None:
        """From the request's side: skip the job if it waits, stop it at the next token if it runs."""
        self._cancelled.set()
        if self.generation is not None:
            self.generation.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


def _hand_over(loop: asyncio.AbstractEventLoop, items: list[tuple[Job, Event]]) -> None:
    """From the worker thread: put each event on its job's queue, in one call on ``loop``."""
    try:
        loop.call_soon_threadsafe(_deliver, items)
    except RuntimeError:  # the loop is closed: the server is shutting down
        for job, _ in items:
            job.cancel()


def _deliver(items: list[tuple[Job, Event]]) -> None:
    for job, event in items:
        job.events.put_nowait(event)


class Outbox:
    """The batched jobs' events, kept on the worker thread and handed to each request loop in one
    call per :meth:`flush` (before each batched decode) rather than one per token: each hand-off
    wakes the loop, whose thread then holds the GIL while the decoding thread, between two
    ``llama_decode`` calls, needs it; on a busy machine the holder may be descheduled meanwhile.
    Flushed just before a decode, the loop's work runs while the decode has the GIL released."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, Event]]] = {}

    def put(self, job: Job, kind: str, payload: Any = None) -> None:
        self._by_loop.setdefault(job.loop, []).append((job, Event(kind, payload)))

    def flush(self) -> None:
        by_loop, self._by_loop = self._by_loop, {}
        for loop, items in by_loop.items():
            _hand_over(loop, items)


class DecodeWorker:
    """Runs jobs on a daemon thread, up to ``parallel`` together; ``submit`` raises QueueFull when
    ``queue_size`` jobs already wait. ``note`` says why it runs one at a time, where it must."""

    def __init__(self, pair: ModelPair, *, queue_size: int, generate_fn: GenerateFn = generate,
                 parallel: int = 1) -> None:
        self.pair = pair
        self.generate_fn = generate_fn
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.note = ""
        self._slots: list[ModelPair] | None = None
        if parallel > 1:
            self._slots = pair_sequences(pair, parallel)
            if self._slots is None:
                self.note = "a model has no multi-sequence context (a server)"
        self._memory = SlotMemory(list(range(self.parallel)))  # slots across scheduler runs
        self._jobs: dict[int, Job] = {}  # key -> job running on the scheduler
        self._keys = 0
        self._first: Job | None = None  # the job that starts the next scheduler run
        self._held: Job | None = None  # a job that cannot batch: it runs alone once the others end
        self._outbox = Outbox()  # the batched jobs' events, until the next decode
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="blendin-decode", daemon=True)
        self._thread.start()

    @property
    def parallel(self) -> int:
        return 1 if self._slots is None else len(self._slots)

    def describe(self, defaults: GenerationSettings, models: list[str]) -> str:
        """The start-up line on ``--parallel``: how many decode together, and what runs alone."""
        if self._slots is None:
            return f"parallel: one request at a time ({self.note or 'asked for'})"
        alone = [m for m in models if not self._method_batches(defaults, m)]
        reuse = ("a request takes a slot whose KV cache its prompt continues"
                 if defaults.reuse_cache else "each from an empty KV cache")
        line = f"parallel: up to {self.parallel} requests decode together, {reuse}"
        if not alone:
            return line + "; every method batches"
        return (line + f"; one at a time, once the others end: {', '.join(alone)} (and any request "
                "whose method or support cannot batch)")

    def _method_batches(self, defaults: GenerationSettings, method: str) -> bool:
        try:
            settings = replace(defaults, method=method)
            return Generation(self.pair, Conversation.single(""), settings).batches
        except BlendinError:
            return False

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, conv: Conversation, settings: GenerationSettings) -> Job:
        job = Job(conv, settings, asyncio.get_running_loop())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the running jobs (waiting jobs are dropped)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled:
                continue
            if self._slots is None or not self._batches(job):
                self._decode(job)
                continue
            self._first = job
            self._run_batch(self._slots)
            held, self._held = self._held, None
            if held is not None and not held.cancelled:
                self._decode(held)
            if self._closing:
                return

    def _batches(self, job: Job) -> bool:
        """Can this job share batched decodes? (Its settings' errors show when it runs alone.)"""
        try:
            return Generation(self.pair, job.conv, job.settings).batches
        except Exception:  # noqa: BLE001 - _decode reports it to the request
            return False

    def _take(self) -> Work | None:
        """The scheduler's source of work: the next waiting job that batches, or None (none now,
        or the next one must run alone: later jobs wait behind it)."""
        while self._held is None and not self._closing:
            job = self._first
            self._first = None
            if job is None:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    return None
            if job is None:
                self._closing = True
                return None
            if job.cancelled:
                continue
            if not self._batches(job):
                self._held = job
                return None
            self._keys += 1
            self._jobs[self._keys] = job
            # With reuse_cache (no --fresh-cache) the scheduler gives the job the free slot whose
            # KV shares the longest prefix with its prompt (a chat's history), else a cleared one.
            return self._keys, job.conv, job.settings
        return None

    def _started(self, key: int, gen: Generation) -> None:
        job = self._jobs[key]
        job.generation = gen
        if job.cancelled:  # cancelled before its generation existed
            gen.cancel()
        self._outbox.put(job, "start")

    def _run_batch(self, slots: list[ModelPair]) -> None:
        try:
            self._route(slots)
        except Exception as exc:  # noqa: BLE001 - not one answer's fault: end them all, live on
            log.exception("the batched decode failed")
            for job in self._jobs.values():
                self._outbox.put(job, "error", exc)
            self._jobs.clear()
            for slot in slots:
                for engine in (slot.base, slot.guide, slot.anti):
                    if engine is not None:
                        engine.rollback(0)
            self._memory = SlotMemory(list(range(len(slots))))
        finally:
            self._outbox.flush()

    def _route(self, slots: list[ModelPair]) -> None:
        """Run the scheduler and post each event for its job (sent before the next decode)."""
        post = self._outbox.put
        for event in _Scheduler(slots, self._take, started=self._started, memory=self._memory,
                                before_decode=self._outbox.flush).run():
            if isinstance(event, Finished):
                job = self._jobs.pop(event.index)
                if event.error is None:
                    post(job, "done", job.generation)
                    continue
                if job.generation is None:  # it failed before it started
                    post(job, "start")
                if not isinstance(event.error, BlendinError):
                    log.error("generation failed", exc_info=event.error)
                post(job, "error", event.error)
            else:
                key, step = event
                post(self._jobs[key], "step", step)

    def _decode(self, job: Job) -> None:
        job.emit("start")
        try:
            gen = self.generate_fn(self.pair, job.conv, job.settings)
            job.generation = gen
            if job.cancelled:  # cancelled between the check and the assignment above
                gen.cancel()
            for step in gen:
                job.emit("step", step)
            job.emit("done", gen)
        except Exception as exc:  # noqa: BLE001 - reported to the request, the worker lives on
            if not isinstance(exc, BlendinError):  # a user's error is not the server's fault
                log.exception("generation failed")
            job.emit("error", exc)
