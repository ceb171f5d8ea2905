"""A network between the client and a server on loopback, for the remote bench and fault tests.

:class:`DelayProxy` listens on a free port of 127.0.0.1 and forwards every connection to a target,
holding each piece of bytes for ``rtt_s / 2`` in each direction (a connection closed is passed on as
late as its bytes): requests cost a round trip, as against a server on another machine. Order is
kept and no bandwidth limit is added. :meth:`DelayProxy.fail` makes the proxy drop (reset) or stall
(stop forwarding, connection kept open) every connection once a given number of response bytes has
passed through it, so tests can break a streamed answer mid-chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from .native_server import free_port

Fault = Literal["drop", "stall"]
READ_BYTES = 65536


@dataclass
class _Failure:
    kind: Fault
    after_bytes: int  # response bytes forwarded (all connections, from ``fail`` on) before it hits
    times: int | None  # connections it breaks before the proxy heals (None: every one)
    passed: int = 0


class DelayProxy:
    """``host:port`` ← 127.0.0.1:``port`` with ``rtt_s / 2`` added each way; run it with
    :func:`delay_proxy`."""

    def __init__(self, target_host: str, target_port: int, rtt_s: float) -> None:
        self.target = (target_host, target_port)
        self.delay_s = rtt_s / 2
        self.port = free_port()
        self.connections = 0
        self._failure: _Failure | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._stop: asyncio.Event | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, kind: Fault, *, after_bytes: int, times: int | None = None) -> None:
        """From now on, drop or stall once ``after_bytes`` more response bytes have passed (``times``
        connections, then heal; None: until :meth:`heal`)."""
        self._failure = _Failure(kind, after_bytes, times)

    def heal(self) -> None:
        self._failure = None

    # --- the event loop thread --------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._server is None:
            raise RuntimeError("the delay proxy did not start")

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)
        self._ready.set()
        await self._stop.wait()
        self._server.close()
        for w in list(self._open):  # a stalled connection would keep the server waiting
            w.transport.abort()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()

    async def _connect(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        writers = (client_w, server_w)
        self._open.update(writers)
        with contextlib.suppress(asyncio.CancelledError):  # the proxy closing with this one open
            await asyncio.gather(self._pipe(client_r, server_w, writers, response=False),
                                 self._pipe(server_r, client_w, writers, response=True),
                                 return_exceptions=True)
        for w in writers:
            w.close()
            self._open.discard(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    writers: tuple[asyncio.StreamWriter, ...], *, response: bool) -> None:
        """Forward ``reader`` to ``writer``, each piece (and the end) ``delay_s`` after it came."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(READ_BYTES):
                    queue.put_nowait((loop.time() + self.delay_s, data))
            queue.put_nowait((loop.time() + self.delay_s, b""))

        receiving = asyncio.ensure_future(receive())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    if response and self._failure is not None and self._failure.kind == "stall" \
                            and self._stop is not None and self._failure.passed > self._failure.after_bytes:
                        await self._stop.wait()  # stalled: the client's side stays open
                    break
                allowed = self._allowed(len(data)) if response else len(data)
                if allowed:
                    writer.write(data[:allowed])
                    await writer.drain()
                if allowed < len(data) and self._break(writers):
                    return
        except ConnectionError:
            pass
        finally:
            receiving.cancel()
            writer.close()

    def _allowed(self, n: int) -> int:
        """How many of ``n`` response bytes may pass before the failure set by :meth:`fail`."""
        failure = self._failure
        if failure is None:
            return n
        allowed = max(0, min(n, failure.after_bytes - failure.passed))
        failure.passed += n
        return allowed

    def _break(self, writers: tuple[asyncio.StreamWriter, ...]) -> bool:
        """Apply the failure: a drop resets both connections (True: stop forwarding); a stall
        swallows what comes (False: keep reading, send nothing)."""
        failure = self._failure
        if failure is None or failure.kind == "stall":
            return False
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                self._failure = None
        for w in writers:
            sock = w.get_extra_info("socket")
            if sock is not None:  # linger 0: close with a reset, not an orderly end
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        return True


@contextmanager
def delay_proxy(target_url: str, rtt_ms: float) -> Iterator[DelayProxy]:
    """A :class:`DelayProxy` in front of ``target_url``'s host and port for the block."""
    from urllib.parse import urlsplit

    parts = urlsplit(target_url)
    proxy = DelayProxy(parts.hostname or "127.0.0.1", parts.port or 80, rtt_ms / 1000)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


def through(url: str, proxy: DelayProxy) -> str:
    """``url`` (``http://host:port/path``) with its host and port replaced by the proxy's."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return proxy.url(parts.path)
