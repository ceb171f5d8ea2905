"""Servers for tests, on loopback: real OpenAI servers holding a GGUF (llama-cpp-python's, and llama.cpp's
native llama-server), and a small scripted HTTP server for the faults a real server won't produce on
demand."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from blendin_local.engines.remote.native_server import find_llama_server, free_port, llama_server, serving


@contextmanager
def llama_cpp_server(
    model: Path, alias: str, *, n_ctx: int = 1024, start_timeout: float = 180
) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its API base URL (…/v1)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2",
            "--verbose", "False"]
    with serving(argv, f"{url}/models", name="llama_cpp.server", start_timeout=start_timeout):
        yield url


@contextmanager
def native_server(model: Path, alias: str, *, n_ctx: int = 2048, parallel: int = 1) -> Iterator[str]:
    """llama.cpp's own ``llama-server`` (``make llama-server``; ``make test`` passes its path in
    $BLENDIN_LLAMA_SERVER) holding ``model`` in ``parallel`` slots; yields its API base URL (…/v1)."""
    with llama_server(find_llama_server(), model, alias, n_ctx=n_ctx, parallel=parallel) as url:
        yield url


Handler = Callable[[BaseHTTPRequestHandler, dict | None], None]


def completion_chunk(tokens: list[str], top_k: int = 2, *, logprobs: bool = True,
                     finish: str | None = None) -> str:
    """One SSE ``data:`` line of a streamed completions answer holding ``tokens``; a real server's
    last chunk carries its ``finish`` reason (``stop``: the model's end, ``length``: the limit)."""
    lp = {
        "tokens": tokens,
        "token_logprobs": [-0.1] * len(tokens),
        "top_logprobs": [{t: -0.1, **{f"alt{i}": -3.0 - i for i in range(top_k - 1)}} for t in tokens],
        "text_offset": list(range(len(tokens))),
    } if logprobs else None
    body = {"id": "x", "object": "text_completion", "model": "m",
            "choices": [{"text": "".join(tokens), "index": 0, "logprobs": lp, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def send_json(h: BaseHTTPRequestHandler, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def send_sse_head(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.end_headers()


@contextmanager
def scripted_server(handlers: dict[str, Handler]) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server answering ``"GET /v1/models"``-style keys with the given handlers
    (404 otherwise); yields (API base URL, log of requests seen)."""
    seen: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            key = f"{self.command} {self.path}"
            seen.append(key)
            body = None
            if self.command == "POST":
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"null")
            handler = handlers.get(key)
            if handler is None:
                send_json(self, 404, {"detail": "Not Found"})
                return
            try:
                handler(self, body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
