"""A small fake Hugging Face Hub: a real HTTP server on 127.0.0.1 serving the endpoints huggingface_hub
calls to download a file (``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``,
``ETag``/``X-Linked-Etag``/``X-Linked-Size`` and ``Range``) and to list a repository
(``GET /api/models/{repo}/tree/{rev}``). Errors carry the Hub's ``X-Error-Code`` header.

No ``X-Xet-Hash`` header is ever sent, so huggingface_hub takes its plain HTTP path (never Xet).
Faults to inject: a wrong advertised sha256 (which is also the ETag: any string), an advertised size,
per-file plans that cut GET bodies short (``drops``: bytes to send before closing; ``0`` closes
without any response), and a repository listing replaced by any body (``tree_body``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)")


@dataclass
class Served:
    data: bytes
    advertised_sha256: str | None = None  # None: the true sha256
    advertised_size: int | None = None  # None: the true size
    drops: list[int] = field(default_factory=list)  # consumed one per GET

    @property
    def sha256(self) -> str:
        return self.advertised_sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    range: str | None


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Served]] = {}
        self.requests: list[Request] = []
        self.tree_body: bytes | None = None  # sent as the listing of every repository when set
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

            def do_GET(self) -> None:
                hub._handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def add(self, repo: str, name: str, data: bytes, **faults: object) -> Served:
        served = Served(data, **faults)  # type: ignore[arg-type]
        self.repos.setdefault(repo, {})[name] = served
        return served

    def gets(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + name)]

    # --- the protocol ----------------------------------------------------------------------------
    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _handle(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        with self._lock:
            self.requests.append(Request(h.command, h.path, h.headers.get("Range")))
        if m := _TREE.match(h.path):
            return self._tree(h, m["repo"], m["rev"])
        m = _RESOLVE.match(h.path)
        if m is None:
            return self._error(h, 404, "EntryNotFound", "unknown route")
        files = self.repos.get(m["repo"])
        if files is None:
            return self._error(h, 401, "RepoNotFound", "Repository not found")
        if m["rev"] not in ("main", COMMIT):
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id")
        served = files.get(m["file"])
        if served is None:
            return self._error(h, 404, "EntryNotFound", "Entry not found")
        self._file(h, served, body=body)

    def _tree(self, h: BaseHTTPRequestHandler, repo: str, rev: str) -> None:
        files = self.repos.get(repo)
        if files is None:
            return self._error(h, 401, "RepoNotFound", "Repository not found")
        listing = [{"type": "file", "path": name, "size": len(s.data), "oid": "0" * 40,
                    "lfs": {"oid": s.sha256, "size": len(s.data), "pointerSize": 134}}
                   for name, s in files.items()]
        payload = json.dumps(listing).encode() if self.tree_body is None else self.tree_body
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _file(self, h: BaseHTTPRequestHandler, served: Served, *, body: bool) -> None:
        data, start = served.data, 0
        drop = served.drops.pop(0) if body and served.drops else None
        if drop == 0:
            h.close_connection = True  # no status line at all
            return
        rng = h.headers.get("Range")
        if body and rng and (m := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(m[1])
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{served.sha256}"')
        h.send_header("X-Linked-Etag", f'"{served.sha256}"')
        h.send_header("X-Linked-Size", str(served.advertised_size or len(data)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        if body:
            h.wfile.write(data[start:] if drop is None else data[start:start + drop])
            h.wfile.flush()
            h.close_connection = True
