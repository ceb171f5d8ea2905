"""The anchor row of ``bench --throughput``: llama.cpp's own ``llama-server`` holding the base, with
one slot (``-np 1``) and with eight (``-np 8``), each answering the bench's eight prompts from eight
streamed clients at once (greedy, the bench's max tokens, EOS ignored so that every answer is as
long as the bare decode loop's; prompt caching off). Its ``-np 8`` / ``-np 1`` ratio is what
llama.cpp's continuous batching gains on this machine, beside ours.

The server is started for the run as ``--remote-native`` starts it (``native_server.llama_server``:
a free loopback port, ``-c`` = slots × ``--n-ctx``, ``-t`` = the bench's threads). Where no
``llama-server`` exists, the row is one line saying how to get it, and the rest of the bench runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..engines.remote.native_server import ServerStartError, find_llama_server, llama_server
from ..engines.remote.shapes import stream_chunks
from ..errors import UsageError

SLOTS = (1, 8)  # llama-server -np values
ALIAS = "base"


@dataclass(frozen=True)
class Anchor:
    """What the anchor row needs: the base's GGUF, the context per slot, the bench's threads, and
    the executable (``--llama-server``; None: ``$BLENDIN_LLAMA_SERVER``, else one on PATH)."""

    model: Path
    n_ctx: int
    threads: int
    binary: str | None = None


def run_anchor(anchor: Anchor, prompts: Sequence[str], *, max_tokens: int, rounds: int
               ) -> dict[str, Any]:
    """``{"tokens_per_s": {"1": …, "8": …}, "tokens": {…}}`` (aggregate over ``rounds``, the slot
    counts in reverse order every other round), or ``{"not_run": one line}`` where no server
    runs."""
    try:
        binary = find_llama_server(anchor.binary)
    except UsageError as exc:
        return {"not_run": str(exc)}
    tokens = {n: 0 for n in SLOTS}
    seconds = {n: 0.0 for n in SLOTS}
    try:
        for r in range(rounds):
            for n in SLOTS if r % 2 == 0 else SLOTS[::-1]:
                with llama_server(binary, anchor.model, ALIAS, n_ctx=anchor.n_ctx,
                                  threads=anchor.threads, parallel=n) as url:
                    _complete(url, "Hello", 1)  # warm-up: pages the weights in
                    t0 = time.perf_counter()
                    tokens[n] += sum(_clients(url, prompts, max_tokens))
                    seconds[n] += time.perf_counter() - t0
    except (ServerStartError, httpx.HTTPError, ValueError) as exc:
        return {"not_run": f"llama-server failed: {exc}".splitlines()[0]}
    return {"tokens_per_s": {str(n): round(tokens[n] / seconds[n], 2) for n in SLOTS},
            "tokens": {str(n): tokens[n] for n in SLOTS}}


def _clients(url: str, prompts: Sequence[str], max_tokens: int) -> list[int]:
    """One streaming client per prompt, all at once; each one's completion tokens."""
    made = [0] * len(prompts)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            made[i] = _complete(url, prompts[i], max_tokens)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return made


def _complete(url: str, prompt: str, max_tokens: int) -> int:
    """Stream one greedy completion; its completion tokens (the server's ``usage``)."""
    body = {"model": ALIAS, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "ignore_eos": True, "cache_prompt": False,
            "stream_options": {"include_usage": True}}
    used = None
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for chunk in stream_chunks(response.iter_lines()):
            usage = chunk.get("usage")
            if usage:
                used = int(usage["completion_tokens"])
    if used is None:
        raise ValueError(f"{url}/completions streamed no usage")
    return used
