"""A model behind an OpenAI-compatible completions server (vLLM, llama.cpp's servers).

Such a model is stateless and gives, per generated position, the sampled token's string and the
top-k alternatives as ``{string: logprob}`` — no dense logits, no KV cache. :meth:`RemoteModel.stream`
asks for a whole chunk in one streaming request and yields positions as they arrive, so a caller that
stops at the first unsure position (BlendIn's gate) closes the stream there: one request per confident
run of tokens, not one per token. Every body from the server is validated where it enters.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import itertools
import json
import os
import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from ...errors import BlendinError, UsageError
from ..base import Capabilities, EngineKind, Position
from .shapes import parse_positions

API_KEY_ENV = "BLENDIN_REMOTE_API_KEY"  # not BLENDIN_API_KEY: that is the key `serve` requires


class RemoteError(BlendinError):
    """The server is unreachable, refused the request, or answered something unusable."""


class RequestRefused(RemoteError):
    """The server answered 400/422 to a request it does not accept (e.g. llama.cpp's native
    server refuses ``echo``): a caller may fall back to another form of the request."""


def _split_url(url: str, spec: str, option: str) -> SplitResult:
    """``urlsplit(url)``, its port and httpx's own parse checked: a URL that either refuses
    (``:notaport``, ``[::1``) is one UsageError line naming ``option``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise UsageError(f"{option}: {spec!r} is not a valid URL ({exc})") from None
    return parts


@dataclass(frozen=True)
class RemoteSpec:
    """Where a remote model lives: the API base URL (ending in ``/v1``) and the served model name."""

    url: str
    model: str

    @staticmethod
    def is_remote(spec: str) -> bool:
        return spec.startswith(("http://", "https://"))

    @classmethod
    def parse(cls, spec: str, model: str | None = None, *, option: str = "--base") -> RemoteSpec:
        """``URL#MODEL`` (or ``URL`` plus ``model``) → a spec; one-line errors name ``option``."""
        url, _, fragment = spec.partition("#")
        name = fragment or model
        parts = _split_url(url, spec, option)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{option}: {spec!r} is not an http(s) URL")
        if not name:
            raise UsageError(f"{option}: name the served model, e.g. {url}#MODEL")
        return cls(url.rstrip("/"), name)


@dataclass
class Traffic:
    """What talking to the server cost: requests, bytes received, seconds spent waiting on it
    (blocked on the network, not while the caller handles a streamed position)."""

    requests: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    most_alternatives: int = 0  # the most top-logprob alternatives one position carried
    settle_s: float = 0.0  # of ``seconds``: left to a server on this machine to stop after a close
    largest_chunk: int = 0  # the most tokens one streamed request asked (the request bound's K)
    base_token_kept: int = 0  # unsure positions where the blend chose the base's own streamed token
    decided_open: int = 0  # unsure positions decided with their stream kept open
    kept_open: int = 0  # ... of them, where the blend kept the base's token and the stream read on

    def to_dict(self) -> dict[str, float]:
        chunk = {"largest_chunk": self.largest_chunk} if self.largest_chunk else {}
        kept = {"base_token_kept": self.base_token_kept, "decided_open": self.decided_open,
                "kept_open": self.kept_open}
        return {"requests": self.requests, "bytes_received": self.bytes_received,
                "seconds": round(self.seconds, 4), "settle_seconds": round(self.settle_s, 4), **chunk,
                **kept}


def _error_message(response: httpx.Response) -> str:
    try:
        body = json.loads(response.read())
        err = body.get("error", body) if isinstance(body, dict) else body
        message = err.get("message") if isinstance(err, dict) else None
        if not message and isinstance(body, dict):
            message = body.get("detail") or body.get("message")
        text = str(message or body)
    except (ValueError, httpx.HTTPError):
        text = response.text if response.is_stream_consumed else ""
    return " ".join(text.split())[:200]


class RemoteModel:
    """A completions server holding one model. Greedy by default (the paper's setting)."""

    capabilities = Capabilities(dense_logits=False, kv_cache=False, top_logprobs=100, vocabulary=False)

    def __init__(
        self,
        spec: RemoteSpec,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        chunk_tokens: int = 16,
        allow_fewer_logprobs: bool = False,
        template: str = "auto",
    ) -> None:
        """``chunk_tokens``: tokens asked per request while the model is confident (1 = the
        reference's one request per token). ``allow_fewer_logprobs``: when the server allows fewer
        alternatives than asked, run with what it allows (recorded in ``traffic``) instead of
        failing. ``template``: how its prompt is written (:mod:`.prompts`)."""
        self.spec = spec
        self.chunk_tokens = chunk_tokens
        self.allow_fewer_logprobs = allow_fewer_logprobs
        self.template = template
        self.rendered: dict[str, str | None] = {}  # conversation → the server's rendering of it
        self.logprob_limit: int | None = None  # learned from the server (a refusal or a silent cap)
        self.last_finish: str | None = None  # the last stream's finish_reason, once it came
        self.name = f"{spec.model}@{spec.url}"
        self.routed = spec.url  # where requests go (another URL: the server behind a proxy)
        # route → the remote loops' measured pace of this server (methods.remote_chunks.ServerClock),
        # kept across answers and shared by clones
        self.clocks: dict[str, Any] = {}
        # a server on a loopback address shares this machine's cores (the remote loops let it finish)
        self.shares_cpu: bool = is_loopback(spec.url)
        # the remote base loop leaves a stream open through an unsure position and reads on where
        # the blend keeps the base's token (methods.remote_steps); False: close it there
        self.keep_open: bool = True
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        key = api_key or os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=spec.url, headers=headers, timeout=timeout)
        self.traffic = Traffic()

    def close(self) -> None:
        self._client.close()

    def clone(self) -> RemoteModel:
        """Another handle on the same server and connection pool (``httpx.Client`` is
        thread-safe) with its own per-stream state (``last_finish``) and its own ``traffic``, so
        that answers in different threads neither share nor count each other's requests. The
        cache of rendered prompts and the measured pace (``clocks``) are shared; a learned
        ``logprob_limit`` is copied. Close only the original: a clone's ``close`` would close the
        shared pool."""
        twin = copy.copy(self)
        twin.traffic = Traffic()
        twin.last_finish = None
        return twin

    def route(self, url: str) -> None:
        """Send requests to ``url`` (the same server behind a proxy) from now on."""
        self._client.base_url = httpx.URL(url.rstrip("/") + "/")
        self.routed = url

    @property
    def where(self) -> str:
        return self.spec.url

    def report(self) -> dict[str, Any]:
        """What this model cost (``Traffic``), and the logprob limit it ran with, if one was hit."""
        limit = {"logprobs_allowed": self.logprob_limit} if self.logprob_limit else {}
        return {**self.traffic.to_dict(), **limit}

    # --- requests -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One request, streamed, retried with exponential backoff on connection errors and 5xx."""
        request = self._client.build_request(method, path, json=body)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException:
                raise RemoteError(f"{self.spec.url} did not answer within {self.timeout:g} s "
                                  "(raise --timeout, or check the server)") from None
            except httpx.TransportError as exc:
                if last:
                    raise RemoteError(f"cannot reach {self.spec.url}: {_reason(exc)} "
                                      f"(is the server running?)") from None
            else:
                self.traffic.requests += 1
                if response.status_code < 500 or last:
                    return self._checked(response, path)
                response.close()
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _checked(self, response: httpx.Response, path: str) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        message = _error_message(response)
        response.close()
        url = self.spec.url
        if status in (401, 403):
            raise RemoteError(f"{url} refused the request ({status}): give the API key with "
                              f"--remote-api-key or ${API_KEY_ENV}")
        if status == 404:
            if "model" in message.lower():
                raise RemoteError(f"{url} does not serve model {self.spec.model!r}: {message}")
            raise RemoteError(f"{url} is not an OpenAI-compatible server (404 on {path})")
        if status in (400, 422) and "logprob" in message.lower():
            limit = logprob_limit_in(message)
            if limit is not None and self.allow_fewer_logprobs:
                raise _LogprobLimit(limit)
            allowed = f"allows {limit} logprobs" if limit is not None else "refused the logprobs asked"
            raise RemoteError(f"the server at {url} {allowed} ({message}); start vLLM with "
                              "--max-logprobs 100, or pass --allow-fewer-logprobs")
        error = RequestRefused if status in (400, 422) else RemoteError
        raise error(f"{url} answered {status} on {path}: {message or 'no message'}")

    def served_models(self) -> list[str]:
        """Model names from ``GET /models``."""
        response = self._send("GET", "/models")
        try:
            data = json.loads(response.read())
            self.traffic.bytes_received += response.num_bytes_downloaded
            names = [str(m["id"]) for m in data["data"]]
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"{self.spec.url} is not an OpenAI-compatible server "
                              "(GET /models gave no model list)") from None
        finally:
            response.close()
        return names

    def check(self) -> None:
        """Fail now, in one line, if the server is down or does not serve this model."""
        names = self.served_models()
        # llama-cpp-python's server answers any name with its one model; vLLM checks names.
        if names and self.spec.model not in names:
            raise RemoteError(f"{self.spec.url} does not serve model {self.spec.model!r} "
                              f"(it serves: {', '.join(names)})")

    def _events(self, body: dict[str, Any], what: str = "tokens") -> Generator[dict[str, Any], None, None]:
        """POST a streaming completions request; yield each ``data:`` object's first choice.

        The stream must end well: on ``data: [DONE]`` or after a choice carrying a
        ``finish_reason``; a body that ends otherwise (no ``data:`` lines, cut short) is a
        :class:`RemoteError` quoting its first bytes. Closing the generator closes the connection
        at once (also on Ctrl-C while waiting)."""
        body = {"model": self.spec.model, "stream": True, **body}
        t0 = time.perf_counter()
        response = self._send("POST", "/completions", body)
        self.traffic.seconds += time.perf_counter() - t0
        seen = _Seen()
        try:
            lines = response.iter_lines()
            while True:
                t0 = time.perf_counter()  # only time spent waiting for the server counts
                line = next(lines, None)
                self.traffic.seconds += time.perf_counter() - t0
                if line is None:
                    break
                payload = seen.line(line)
                if payload == "[DONE]":
                    return
                choice = None if payload is None else self._choice(payload)
                if choice is not None:
                    seen.finished = seen.finished or isinstance(choice.get("finish_reason"), str)
                    seen.n += 1
                    yield choice
        except httpx.TimeoutException:
            raise RemoteError(f"{self.spec.url} stopped answering mid-stream after {seen.n} {what} "
                              f"(no data for {self.timeout:g} s)") from None
        except httpx.TransportError as exc:
            raise RemoteError(f"the connection to {self.spec.url} dropped mid-stream after {seen.n} "
                              f"{what}: {_reason(exc)}") from None
        finally:
            self.traffic.bytes_received += response.num_bytes_downloaded
            response.close()
        if not seen.finished:
            raise RemoteError(f"{self.spec.url} {seen.problem(what)}; it sent {seen.head!r}")

    def _choice(self, payload: str) -> dict[str, Any] | None:
        try:
            data = json.loads(payload)
        except ValueError:
            raise RemoteError(f"{self.spec.url} sent a completions chunk that is not JSON: "
                              f"{payload[:HEAD_CHARS]!r}") from None
        try:
            if isinstance(data, dict) and "error" in data:
                err = data["error"]
                message = err.get("message") if isinstance(err, dict) else err
                raise RemoteError(f"{self.spec.url} reported an error mid-stream: {message}")
            choices = data["choices"]
            if not isinstance(choices, list):
                raise TypeError
            if choices and not isinstance(choices[0], dict):
                raise ValueError("a choice is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._shape_error(exc) from None
        return choices[0] if choices else None

    def _shape_error(self, exc: Exception) -> RemoteError:
        detail = f": {exc}" if str(exc) else ""
        return RemoteError(f"{self.spec.url} sent a completions chunk that is not OpenAI's shape{detail}")

    def _unfinished(self, got: int, asked: int, what: str = "tokens") -> RemoteError:
        return RemoteError(f"{self.spec.url} ended its answer after {got} of {asked} {what} "
                           "without a finish_reason (neither 'stop' nor 'length')")

    def complete_json(self, body: dict[str, Any]) -> Any:
        """One non-streamed ``/completions`` request; its parsed JSON body (not yet validated)."""
        t0 = time.perf_counter()
        response = self._send("POST", "/completions", {"model": self.spec.model, **body})
        try:
            raw = response.read()
            data = json.loads(raw)
        except ValueError:
            raise RemoteError(f"{self.spec.url} answered /completions with something that is not "
                              f"JSON: {raw[:HEAD_CHARS]!r}") from None
        except httpx.TimeoutException:
            raise RemoteError(f"{self.spec.url} did not finish its answer within "
                              f"{self.timeout:g} s (raise --timeout)") from None
        except httpx.TransportError as exc:
            raise RemoteError(f"the connection to {self.spec.url} dropped: {_reason(exc)}") from None
        finally:
            self.traffic.bytes_received += response.num_bytes_downloaded
            self.traffic.seconds += time.perf_counter() - t0
            response.close()
        return data

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        logprobs: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generator[Position, None, None]:
        """Generate up to ``max_tokens`` after ``prompt`` in one streaming request, yielding each
        position with (up to) ``logprobs`` alternatives as it arrives; closing the generator early
        closes the stream (no more reading).

        A server that allows fewer alternatives (a 400 naming its limit, or silently fewer) is a
        one-line error, or with ``allow_fewer_logprobs`` its limit is used from then on."""
        body: dict[str, Any] = {
            "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
            # llama.cpp-based servers default to a 1.1 repeat penalty, which moves the chosen token
            # away from the reported distribution's top: switch it off (vLLM's name and llama.cpp's)
            "repeat_penalty": 1.0, "repetition_penalty": 1.0,
        }
        if stop:
            body["stop"] = list(stop)
        if seed is not None:
            body["seed"] = seed
        asked = min(logprobs, self.logprob_limit or logprobs)
        self.last_finish = None
        try:
            events = self._events({**body, "logprobs": asked})
            first = next(events, None)
        except _LogprobLimit as limit:  # a refusal naming the limit, and the user allows fewer
            self.logprob_limit = asked = limit.allowed
            events = self._events({**body, "logprobs": asked})
            first = next(events, None)
        n = 0
        with contextlib.closing(events):
            for choice in itertools.chain([first] if first is not None else [], events):
                finish = choice.get("finish_reason")
                if isinstance(finish, str):
                    self.last_finish = finish
                try:
                    positions = parse_positions(choice)
                except ValueError as exc:
                    raise self._shape_error(exc) from None
                if choice.get("text") and not positions:
                    raise RemoteError(f"the server at {self.spec.url} returned no logprobs (it must "
                                      "support the completions API's logprobs)")
                for position in positions:
                    self._check_alternatives(position, asked, logprobs)
                    n += 1
                    yield position
        if self.last_finish is None and n < max_tokens:  # [DONE] alone does not end the text
            raise self._unfinished(n, max_tokens)

    def ended_early(self, got: int, asked: int) -> bool:
        """Did the last stream end the text (the model's end), rather than stop at the token
        limit? llama-server streams one position per character where a character spans several
        byte tokens, so a chunk can hold fewer positions than tokens asked yet end on ``length``;
        and a ``stop`` ends the text even on the last token asked (a chunk of exactly the answer's
        rest: read as used up, it cost one more request)."""
        return got == 0 or self.last_finish == "stop" or (got < asked and self.last_finish != "length")

    def _check_alternatives(self, position: Position, asked: int, wanted: int) -> None:
        """Detect a server that silently returns fewer alternatives than asked. Strings that decode
        alike collapse a few entries (98 of 100 measured on SmolLM2), so only a count under
        ``CAP_SHARE`` of the ask, at every position seen so far, is taken for a cap."""
        self.traffic.most_alternatives = max(self.traffic.most_alternatives, len(position.top))
        got = self.traffic.most_alternatives
        if asked <= 1 or got >= CAP_SHARE * asked:
            return
        if not self.allow_fewer_logprobs:
            raise RemoteError(f"the server at {self.spec.url} returned {got} logprobs where {wanted} "
                              f"were asked (a limit): start vLLM with --max-logprobs {wanted}, or "
                              "pass --allow-fewer-logprobs")
        self.logprob_limit = got

    def text_stream(self, prompt: str, *, max_tokens: int) -> Generator[tuple[str, str | None], None, None]:
        """Greedy text after ``prompt`` without logprobs (cheap on every server): yields
        ``(text, finish_reason)`` per streamed chunk; finish_reason ``"stop"`` means the model ended
        (its end of turn, EOS) and ``"length"`` that ``max_tokens`` ran out."""
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
                "repeat_penalty": 1.0, "repetition_penalty": 1.0}
        n, finished = 0, False
        with contextlib.closing(self._events(body, what="chunks")) as events:
            for choice in events:
                text, finish = choice.get("text", ""), choice.get("finish_reason")
                if not isinstance(text, str) or not (finish is None or isinstance(finish, str)):
                    raise self._shape_error(ValueError("text or finish_reason is not a string"))
                n += bool(text)
                finished = finished or finish is not None
                yield text, finish
        if not finished and n < max_tokens:  # [DONE] alone does not end the text
            raise self._unfinished(n, max_tokens, "chunks")

    def next_position(self, prompt: str, *, logprobs: int) -> Position | None:
        """The distribution at the position after ``prompt`` (one one-token request), or None when
        the server ends the text there."""
        with contextlib.closing(self.stream(prompt, max_tokens=1, logprobs=logprobs)) as positions:
            return next(positions, None)

    def apply_template(self, messages: list[dict[str, str]]) -> str | None:
        """The served model's own chat template applied to ``messages`` with the assistant turn
        opened, where the server exposes it (llama.cpp's ``POST /apply-template``), else None."""
        root = self.spec.url.removesuffix("/v1")
        try:
            response = self._client.post(f"{root}/apply-template", json={"messages": messages})
            self.traffic.requests += 1
            self.traffic.bytes_received += len(response.content)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            prompt = response.json()["prompt"]
        except (ValueError, KeyError, TypeError):
            return None
        return prompt if isinstance(prompt, str) and prompt else None

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        return self.next_position(prompt, logprobs=k)


HEAD_CHARS = 80  # how much of a malformed answer an error quotes


class _Seen:
    """What a completions stream has sent so far: its first characters, its events, whether it
    ended well (``[DONE]`` or a ``finish_reason``)."""

    def __init__(self) -> None:
        self.head = ""
        self.events = 0
        self.n = 0
        self.finished = False

    def line(self, line: str) -> str | None:
        """One line of the body: its ``data:`` payload, or None for any other line (SSE comments,
        ``event:`` fields, blank separators)."""
        if len(self.head) < HEAD_CHARS:
            self.head = (self.head + line + "\n")[:HEAD_CHARS]
        if not line.startswith("data:"):
            return None
        self.events += 1
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.finished = True
        return payload

    def problem(self, what: str) -> str:
        if self.events == 0:
            return "answered /completions with no server-sent events (no 'data:' line)"
        return (f"ended its stream after {self.n} {what} without a finish_reason or "
                "'data: [DONE]'")


class _LogprobLimit(Exception):
    """Internal: the server refused the logprobs asked and named its limit."""

    def __init__(self, allowed: int) -> None:
        super().__init__(allowed)
        self.allowed = allowed


CAP_SHARE = 0.8


def logprob_limit_in(message: str) -> int | None:
    """The limit a refusal names ("… greater than max allowed: 20"), if any."""
    found = re.search(r"(?:max(?:imum)?[^0-9]{0,40})(\d+)", message, re.IGNORECASE)
    return int(found.group(1)) if found else None


def is_loopback(url: str) -> bool:
    """Is ``url``'s host this machine (localhost, 127.0.0.0/8, ::1)?"""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return " ".join(text.split())[:120]


def open_remote(spec: str, **options: Any) -> RemoteModel:
    """A remote model from ``URL#MODEL``, checked now (server up, model served)."""
    model = RemoteModel(RemoteSpec.parse(spec), **options)
    model.check()
    return model


KIND = EngineKind(name="remote", spelling="an OpenAI-compatible server as http(s)://HOST:PORT/v1#MODEL",
                  claims=RemoteSpec.is_remote, open=open_remote)
