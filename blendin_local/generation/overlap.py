"""The guide's work beside the base's decode: two models, two cores, one step (spec §11).

At every step the base evaluates the token just picked, and the guide (lazily) catches up with the
same text where the gate opens. The two are independent until the next gate, so with cores to
spare the guide's catch-up runs in a worker thread *while* the base decodes (llama.cpp releases the
GIL inside ``llama_decode``): the guide is then always caught up, and an intervention costs the
guide nothing on the critical path. Measured on 2 cores (one thread per model): a base decode of
8 sequences took 100 ms, the guide's catch-up of the same 8 tokens 79 ms, both together 101 ms.

It pays only where the two do not fight for cores: llama.cpp's threads spin on barriers, and two
models oversubscribing the cores are many times slower. :func:`overlap_allowed` decides.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..engines.base import Engine, Eval, Requests, fits_context, run_evals
from ..pair import ModelPair

ENV = "BLENDIN_OVERLAP"  # on / off / auto (the default)


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_threads(engine: Engine) -> int | None:
    """The threads ``engine``'s decodes spin, where it runs on this CPU (None: on a GPU, a server
    or a fake, whose use of the cores is unknown)."""
    threads = getattr(engine, "cpu_threads", None)
    return None if threads is None else threads()


def overlap_mode() -> str:
    """``on``, ``off`` or ``auto``: what ``BLENDIN_OVERLAP`` asks (anything unknown is ``auto``)."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode in ("on", "1", "yes", "true"):
        return "on"
    if mode in ("off", "0", "no", "false"):
        return "off"
    return "auto"


def overlap_allowed(pair: ModelPair) -> bool:
    """Whether the guide's (and anti-expert's) catch-ups may run beside the base's decodes.

    ``BLENDIN_OVERLAP=on`` / ``off`` decides outright. By default (``auto``): only where every
    model runs here on the CPU and the base's threads plus the most any other model spins fit the
    usable cores (llama-cpp-python's default, half the cores per model, fits; ``--threads`` equal
    to every core does not). GPU-offloaded models are left sequential: untested here.
    """
    mode = overlap_mode()
    if mode != "auto":
        return mode == "on"
    if pair.base is None or (pair.guide is None and pair.anti is None):
        return False
    base = _cpu_threads(pair.base)
    others = [_cpu_threads(e) for e in (pair.guide, pair.anti) if e is not None]
    if base is None or any(t is None for t in others):
        return False
    return base + max(t for t in others if t is not None) <= cpu_count()


def run_together(sources: Iterable[Requests[Any]]) -> float:
    """Run request generators to their ends, each round's requests in one :func:`run_evals`
    (batched per model); returns the seconds spent evaluating.

    A source whose request does not fit its model's context, or whose evaluation fails, is
    dropped: this is work done ahead of need, and the step source does it again (and meets the
    error) where it needs it.
    """
    waiting: list[tuple[Requests[Any], Eval]] = []
    for source in sources:
        _advance(source, waiting)
    seconds = 0.0
    while waiting:
        batch, waiting = waiting, []
        fits = []
        for source, request in batch:
            if fits_context(request):
                fits.append((source, request))
            else:
                source.close()
        t0 = time.perf_counter()
        try:
            run_evals(r for _, r in fits)
        except Exception:  # noqa: BLE001 - ahead of need: the step source will meet it itself
            for source, _ in fits:
                source.close()
            return seconds + time.perf_counter() - t0
        seconds += time.perf_counter() - t0
        for source, _ in fits:
            _advance(source, waiting)
    return seconds


def _advance(source: Requests[Any], waiting: list[tuple[Requests[Any], Eval]]) -> None:
    try:
        waiting.append((source, next(source)))
    except StopIteration:
        pass
    except Exception:  # noqa: BLE001 - as in run_together: left to the step source
        pass


class Overlap:
    """One worker thread that runs ``Eval.beside`` work while the caller's decode runs."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def run(self, decode: Callable[[], None], requests: Iterable[Eval]) -> None:
        """Call ``decode`` (the driving model's evaluation of ``requests``) with their ``beside``
        work running in the worker meanwhile; returns once both are done."""
        sources = [source for r in requests if r.beside is not None for source in r.beside()]
        if not sources:
            decode()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blendin-beside")
        future = self._pool.submit(run_together, sources)
        try:
            decode()
        finally:
            _wait(future)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _wait(future: Future[float]) -> None:
    """Wait for the worker even through Ctrl-C (its decode is one step: the next answer must not
    find a context still in use), then let the interrupt through."""
    interrupted = False
    while True:
        try:
            future.result()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
