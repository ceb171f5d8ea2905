"""A model behind an OpenAI-compatible completions server (vLLM, llama.cpp's servers).

Such a model is stateless and gives, per generated position, the sampled token's string and the
top-k alternatives as ``{string: logprob}`` — no dense logits, no KV cache. :meth:`RemoteModel.stream`
asks for a whole chunk in one streaming request and yields positions as they arrive, so a caller that
stops at the first unsure position (BlendIn's gate) closes the stream there: one request per confident
run of tokens, not one per token. Every body from the server is validated where it enters.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import BlendinError, UsageError
from .base import Capabilities, EngineKind, Position

API_KEY_ENV = "BLENDIN_REMOTE_API_KEY"  # not BLENDIN_API_KEY: that is the key `serve` requires


class RemoteError(BlendinError):
    """The server is unreachable, refused the request, or answered something unusable."""


class RequestRefused(RemoteError):
    """The server answered 400/422 to a request it does not accept (e.g. llama.cpp's native
    server refuses ``echo``): a caller may fall back to another form of the request."""


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
        parts = urlsplit(url)
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

    def to_dict(self) -> dict[str, float]:
        return {"requests": self.requests, "bytes_received": self.bytes_received,
                "seconds": round(self.seconds, 4)}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{what} is not a number")
    return float(value)


def parse_positions(choice: Any) -> list[Position]:
    """Positions of one ``choices[i]`` object of a completions answer (raises ValueError)."""
    if not isinstance(choice, dict):
        raise ValueError("a choice is not an object")
    lp = choice.get("logprobs")
    if lp is None:
        return []
    if not isinstance(lp, dict):
        raise ValueError("logprobs is not an object")
    tokens, values, tops = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs")
    if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(tops, list)):
        raise ValueError("logprobs lacks tokens / token_logprobs / top_logprobs lists")
    if not len(tokens) == len(values) == len(tops):
        raise ValueError("logprobs lists have different lengths")
    out = []
    for token, value, top in zip(tokens, values, tops, strict=True):
        if not isinstance(token, str):
            raise ValueError("a token is not a string")
        if top is None:
            top = {}
        if not isinstance(top, dict):
            raise ValueError("a top_logprobs entry is not an object")
        alternatives = {str(s): _number(v, "a top logprob") for s, v in top.items()}
        out.append(Position(token, _number(value, "a token logprob"), alternatives))
    return out


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

    gives = "top-k logprobs"
    stateless = True
    capabilities = Capabilities(dense_logits=False, kv_cache=False, top_logprobs=100,
                                token_id_prompts=False, chunked_generation=True, vocabulary=False)

    def __init__(
        self,
        spec: RemoteSpec,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        chunk_tokens: int = 16,
    ) -> None:
        """``chunk_tokens``: tokens asked per request while the model is confident (1 = the
        reference's one request per token)."""
        self.spec = spec
        self.chunk_tokens = chunk_tokens
        self.name = f"{spec.model}@{spec.url}"
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        key = api_key or os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=spec.url, headers=headers, timeout=timeout)
        self.traffic = Traffic()

    def close(self) -> None:
        self._client.close()

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
            limit = re.search(r"(?:max(?:imum)?[^0-9]{0,40})(\d+)", message, re.IGNORECASE)
            allowed = f"allows {limit.group(1)} logprobs" if limit else "refused the logprobs asked"
            raise RemoteError(f"the server at {url} {allowed} ({message}); start vLLM with "
                              "--max-logprobs 100, or ask for fewer with --logprobs")
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

    def complete_json(self, body: dict[str, Any]) -> Any:
        """One non-streamed ``/completions`` request; its parsed JSON body (not yet validated)."""
        t0 = time.perf_counter()
        response = self._send("POST", "/completions", {"model": self.spec.model, **body})
        try:
            data = json.loads(response.read())
        except ValueError:
            raise RemoteError(f"{self.spec.url} answered /completions with something that is not "
                              "JSON") from None
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
        position as it arrives; closing the generator early closes the stream (no more reading)."""
        body: dict[str, Any] = {
            "model": self.spec.model, "prompt": prompt, "max_tokens": max_tokens,
            "logprobs": logprobs, "temperature": temperature, "stream": True,
            # llama.cpp-based servers default to a 1.1 repeat penalty, which moves the chosen token
            # away from the reported distribution's top: switch it off (vLLM's name and llama.cpp's)
            "repeat_penalty": 1.0, "repetition_penalty": 1.0,
        }
        if stop:
            body["stop"] = list(stop)
        if seed is not None:
            body["seed"] = seed
        t0 = time.perf_counter()
        response = self._send("POST", "/completions", body)
        self.traffic.seconds += time.perf_counter() - t0
        n = 0
        try:
            lines = response.iter_lines()
            while True:
                t0 = time.perf_counter()  # only time spent waiting for the server counts
                line = next(lines, None)
                self.traffic.seconds += time.perf_counter() - t0
                if line is None:
                    return
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                for position in self._chunk_positions(payload):
                    n += 1
                    yield position
        except httpx.TimeoutException:
            raise RemoteError(f"{self.spec.url} stopped answering mid-stream after {n} tokens "
                              f"(no data for {self.timeout:g} s)") from None
        except httpx.TransportError as exc:
            raise RemoteError(f"the connection to {self.spec.url} dropped mid-stream after {n} "
                              f"tokens: {_reason(exc)}") from None
        finally:
            self.traffic.bytes_received += response.num_bytes_downloaded
            response.close()

    def _chunk_positions(self, payload: str) -> list[Position]:
        try:
            data = json.loads(payload)
            if isinstance(data, dict) and "error" in data:
                err = data["error"]
                message = err.get("message") if isinstance(err, dict) else err
                raise RemoteError(f"{self.spec.url} reported an error mid-stream: {message}")
            choices = data["choices"]
            if not isinstance(choices, list):
                raise TypeError
            positions = [p for c in choices[:1] for p in parse_positions(c)]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            detail = f": {exc}" if str(exc) else ""
            raise RemoteError(f"{self.spec.url} sent a completions chunk that is not OpenAI's "
                              f"shape{detail}") from None
        text = "".join(c.get("text", "") for c in choices[:1] if isinstance(c, dict))
        if text and not positions:
            raise RemoteError(f"the server at {self.spec.url} returned no logprobs (it must "
                              "support the completions API's logprobs)")
        return positions

    def next_position(self, prompt: str, *, logprobs: int) -> Position | None:
        """The distribution at the position after ``prompt`` (one one-token request), or None when
        the server ends the text there."""
        with contextlib.closing(self.stream(prompt, max_tokens=1, logprobs=logprobs)) as positions:
            return next(positions, None)

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        return self.next_position(prompt, logprobs=k)


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
