"""One decoding thread per loaded pair, fed by a bounded queue.

llama.cpp contexts are not thread-safe and a pair's KV caches are shared state, so every
generation runs on this one thread, one after the other; requests wait their turn in the queue.
Each job streams its events back to the asyncio loop of the request that submitted it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BlendinError
from ..generate import Generation, generate
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
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, Event(kind, payload))
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.cancel()

    def cancel(self) -> None:
        """From the request's side: skip the job if it waits, stop it at the next token if it runs."""
        self._cancelled.set()
        if self.generation is not None:
            self.generation.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class DecodeWorker:
    """Runs jobs one at a time on a daemon thread; ``submit`` raises QueueFull when ``queue_size``
    jobs already wait."""

    def __init__(self, pair: ModelPair, *, queue_size: int, generate_fn: GenerateFn = generate) -> None:
        self.pair = pair
        self.generate_fn = generate_fn
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="blendin-decode", daemon=True)
        self._thread.start()

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
        """Stop after the current job (waiting jobs are dropped)."""
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
            if not job.cancelled:
                self._decode(job)

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
