"""Start OpenAI-compatible servers on loopback for the length of a ``with`` block: llama.cpp's
native ``llama-server`` (built once by ``make llama-server``), whose logprobs are computed in C++ —
the server the remote speed bench runs against — and any other server command (tests start
llama-cpp-python's the same way).

Each server listens on a free port of 127.0.0.1; its log goes to a temporary file (a pipe would
fill up and block it) whose tail is quoted if it exits while starting; it is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from ...errors import BlendinError, UsageError

BINARY_ENV = "BLENDIN_LLAMA_SERVER"


class ServerStartError(BlendinError):
    """A server that exited, or did not answer, while starting."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_llama_server(path: str | None = None) -> Path:
    """The ``llama-server`` executable: ``path``, else ``$BLENDIN_LLAMA_SERVER``, else one on PATH."""
    given = path or os.environ.get(BINARY_ENV)
    found = given or shutil.which("llama-server")
    if not found:
        raise UsageError("llama-server not found: build it with `make llama-server` (prints nothing "
                         f"when cached) and give its path with --llama-server or ${BINARY_ENV}")
    binary = Path(found)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise UsageError(f"llama-server: {binary} is not an executable file")
    return binary


@contextmanager
def serving(argv: Sequence[str], ready_url: str, *, name: str, start_timeout: float = 180,
            cpus: set[int] | None = None) -> Iterator[None]:
    """Run ``argv`` until the block ends (on the given CPU cores only, where ``cpus`` names them);
    the block starts once ``GET ready_url`` answers 200."""
    log = tempfile.TemporaryFile()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=pin)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace").strip().splitlines()
                raise ServerStartError(f"{name} exited while starting (code {proc.returncode})"
                                       + (f": {tail[-1]}" if tail else ""))
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"{name} did not answer {ready_url} within {start_timeout:g} s")
            time.sleep(0.25)
        yield
    finally:
        log.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def llama_server(
    binary: Path, model: Path, alias: str, *, n_ctx: int = 2048, threads: int = 2,
    extra: Sequence[str] = (), start_timeout: float = 180, parallel: int = 1,
    cpus: set[int] | None = None,
) -> Iterator[str]:
    """``llama-server`` holding ``model`` as ``alias`` (``parallel`` slots of ``n_ctx`` tokens each,
    batched together by the server; no web UI); yields its API base URL (…/v1).

    ``--swa-full``: a full-size cache for sliding-window layers (Gemma 2/3). Without it the server's
    prompt cache re-evaluates re-sent text differently, and a re-sent answer's next-token logprobs
    differed from the streamed ones by up to 0.32 (Gemma-3-270M); with it they are identical, so the
    per-token loop and the chunked one see the same distributions."""
    port = free_port()
    argv = [str(binary), "-m", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "-c", str(n_ctx * parallel), "-t", str(threads), "-np", str(parallel), "--swa-full",
            "--no-webui", *extra]
    root = f"http://127.0.0.1:{port}"
    with serving(argv, f"{root}/health", name=f"llama-server ({model.name})", start_timeout=start_timeout,
                 cpus=cpus):
        yield f"{root}/v1"
