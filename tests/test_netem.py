"""The delay proxy (``blendin_local.engines.remote.netem``) in front of real loopback servers: it adds at
least the round trip asked, changes no byte, and drops or stalls a connection mid-answer when told to."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from blendin_local.engines.remote.netem import delay_proxy, through


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@contextmanager
def serving(server: socketserver.ThreadingTCPServer, path: str = "") -> Iterator[str]:
    """Run ``server`` on a thread; yields its loopback URL (+ ``path``)."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()


def echo_server() -> AbstractContextManager[str]:
    return serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo))


def round_trip(port: int, payload: bytes) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.perf_counter()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            got += chunk
        return got, time.perf_counter() - t0


@pytest.mark.parametrize("rtt_ms", [0, 20, 50])
def test_adds_the_round_trip_and_keeps_every_byte(rtt_ms):
    payload = os.urandom(300_000)  # several reads: order must be kept
    with echo_server() as url, delay_proxy(url, rtt_ms) as proxy:
        got, seconds = round_trip(proxy.port, b"ping")
        assert got == b"ping" and seconds >= rtt_ms / 1000
        got, seconds = round_trip(proxy.port, payload)
        assert got == payload and seconds >= rtt_ms / 1000
    with echo_server() as url:  # the same without the proxy: well under the smallest RTT tested
        _, direct = round_trip(int(url.rsplit(":", 1)[1]), b"ping")
    assert direct < 0.02


class _Slow(BaseHTTPRequestHandler):
    """A streamed (chunked) answer of 20 lines, 5 ms apart, as a completions server sends."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(20):
                line = f"line {i:02d} {'x' * 40}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.005)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


def http_server() -> AbstractContextManager[str]:
    return serving(ThreadingHTTPServer(("127.0.0.1", 0), _Slow), "/v1")


def test_an_http_answer_arrives_whole_one_round_trip_late():
    with http_server() as url:
        direct = httpx.get(url, timeout=10).text
        with delay_proxy(url, 40) as proxy:
            t0 = time.perf_counter()
            proxied = httpx.get(through(url, proxy), timeout=10).text
            assert time.perf_counter() - t0 >= 0.04
    assert proxied == direct and direct.count("\n") == 20


def test_a_drop_resets_the_connection_mid_answer():
    with http_server() as url, delay_proxy(url, 0) as proxy:
        proxy.fail("drop", after_bytes=300)
        got = b""
        with pytest.raises(httpx.TransportError), httpx.stream("GET", through(url, proxy), timeout=10) as r:
            for chunk in r.iter_raw():
                got += chunk
        assert 0 < len(got) < 20 * 49


def test_a_stall_keeps_the_connection_open_and_silent():
    with http_server() as url, delay_proxy(url, 0) as proxy:
        proxy.fail("stall", after_bytes=300)
        got = b""
        t0 = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout), httpx.stream("GET", through(url, proxy), timeout=0.5) as r:
            for chunk in r.iter_raw():
                got += chunk
        assert time.perf_counter() - t0 >= 0.5 and 0 < len(got) < 20 * 49
        proxy.heal()
        assert httpx.get(through(url, proxy), timeout=10).text.count("\n") == 20


def test_a_drop_can_hit_once_and_heal():
    with http_server() as url, delay_proxy(url, 0) as proxy:
        proxy.fail("drop", after_bytes=0, times=1)
        with pytest.raises(httpx.TransportError):
            httpx.get(through(url, proxy), timeout=10)
        assert httpx.get(through(url, proxy), timeout=10).text.count("\n") == 20
