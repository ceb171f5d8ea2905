"""The FastAPI application: routes, API key, limits, OpenAI-shaped errors, access log.

A thin layer over ``generate``: requests become a ``Conversation`` and ``GenerationSettings``, the
decoding worker runs them (up to ``parallel`` together), steps come back as chunks or one response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BlendinError, ContextOverflowError, UsageError
from ..generation.generate import Generation, generate
from ..generation.steps import Step
from ..methods import METHODS
from ..pair import ModelPair
from ..prompts import CHAT_SYSTEM, Conversation
from ..settings import GenerationSettings
from .schema import (
    ChatRequest,
    CompletionRequest,
    api_message,
    chat_to_conversation,
    completion_to_conversation,
    param_of,
    prompt_chars,
    request_settings,
)
from .shapes import Reply
from .worker import DecodeWorker, Event, GenerateFn, Job, QueueFull

log = logging.getLogger("blendin_local.serve")

GONE = Event("gone")  # the client disconnected
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               503: "server_busy", 500: "server_error"}


@dataclass(frozen=True)
class ServeConfig:
    """What the ``serve`` command's options set; requests override ``defaults`` field by field."""

    defaults: GenerationSettings = field(default_factory=lambda: GenerationSettings(reuse_cache=True))
    api_key: str | None = None
    system: str = CHAT_SYSTEM
    first_model: str = "blendin"
    queue_size: int = 16
    queue_timeout_s: float = 300.0
    retry_after_s: int = 5
    max_body_bytes: int = 1 << 20
    max_tokens_limit: int = 4096
    max_prompt_chars: int = 200_000
    parallel: int = 1  # requests decoded together (many-answers scheduler) where the method batches


class ApiError(Exception):
    """An error answered in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_library(exc: Exception) -> ApiError:
    """The library's errors (raised while settings are built or a generation runs)."""
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, UsageError):
        msg = str(exc)
        return ApiError(422, api_message(msg), code="invalid_value", param=param_of(msg))
    if isinstance(exc, BlendinError):
        return ApiError(400, str(exc), code="invalid_request")
    return ApiError(500, "the generation failed on the server (see its log)", code="internal_error")


def servable_models(pair: ModelPair) -> list[str]:
    """One model id per method this pair can run (the ``model`` field picks the method)."""
    have = {"base": pair.base, "guide": pair.guide, "anti": pair.anti}
    return [m.name for m in METHODS.values() if all(have[role] is not None for role in m.roles)]


class Guard:
    """ASGI middleware, before any route (unknown paths included): the API key, then the body
    size limit (413), whether the body announces its length or streams it."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, limit: int) -> None:
        self.app, self.api_key, self.limit = app, api_key, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None:
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), self.api_key):
                await ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                               code="invalid_api_key").response()(scope, receive, send)
                return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await ApiError(413, f"the request body is over {self.limit} bytes",
                           code="body_too_large").response()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI lets an HTTPException from the body read through
                raise HTTPException(413, f"the request body is over {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


def create_app(pair: ModelPair, config: ServeConfig, *, generate_fn: GenerateFn = generate) -> FastAPI:
    models = servable_models(pair)
    models.sort(key=lambda m: m != config.first_model)
    state: dict[str, DecodeWorker] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["worker"] = worker = DecodeWorker(pair, queue_size=config.queue_size,
                                                generate_fn=generate_fn, parallel=config.parallel)
        if config.parallel > 1:
            log.info(worker.describe(config.defaults, models))
        yield
        await asyncio.to_thread(state["worker"].close)

    app = FastAPI(title="blendin-local", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(Guard, api_key=config.api_key, limit=config.max_body_bytes)
    app.add_middleware(AccessLog)  # added last: the outermost, it sees Guard's refusals too

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" or tuple(e["loc"]) == ("body",) for e in errors):
            return ApiError(400, "the request body must be a JSON object (Content-Type: "
                            "application/json)", code="invalid_json").response()
        first = errors[0]
        loc = [str(x) for x in first["loc"] if x != "body"]
        where = ".".join(loc) or "body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return ApiError(422, f"{where}: {first['msg']}{more}", code="invalid_value",
                        param=where).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return ApiError(exc.status_code, str(exc.detail),
                        code=codes.get(exc.status_code, "http_error")).response()

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return from_library(exc).response()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(m) for m in models]}

    @app.get("/v1/models/{model}")
    async def get_model(model: str) -> dict[str, Any]:
        _check_model(model)
        return _model_card(model)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, req, "chat", lambda: chat_to_conversation(req, config.system))

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, req, "text", lambda: completion_to_conversation(req))

    def _check_model(model: str) -> None:
        if model not in models:
            raise ApiError(404, f"the model {model!r} does not exist here (served: {', '.join(models)})",
                           code="model_not_found", param="model")

    async def complete(
        request: Request, req: ChatRequest | CompletionRequest, kind: str,
        conversation: Callable[[], Conversation],
    ) -> JSONResponse | StreamingResponse:
        access = Access.of(request)
        access.model, access.stream = req.model, req.stream
        _check_model(req.model)
        method = req.method or req.model
        if method not in models:
            raise ApiError(422, f"method must be one of {', '.join(models)}, got {method!r}",
                           code="invalid_value", param="method")
        try:
            conv = conversation()
            settings = request_settings(req, config.defaults, method=method,
                                        max_tokens_limit=config.max_tokens_limit)
        except BlendinError as exc:
            raise from_library(exc) from None
        if prompt_chars(conv) > config.max_prompt_chars:
            raise ApiError(400, f"the prompt is over {config.max_prompt_chars} characters",
                           code="context_length_exceeded", param="messages")
        try:
            job = state["worker"].submit(conv, settings)
        except QueueFull:
            raise ApiError(429, f"the server is busy: {config.queue_size} requests already wait; "
                           "retry later", code="queue_full",
                           headers={"Retry-After": str(config.retry_after_s)}) from None
        reply = Reply(kind, req.model, req.n_top)
        started = await _wait_turn(job, request)
        first = await _next_event(job, request) if started else None
        if first is None:  # the client left while waiting
            access.log_when_finished(job, 499)
            return JSONResponse({}, status_code=499)
        if first.kind == "error":
            err = from_library(first.payload)
            access.log(err.status)
            raise err
        if req.stream:
            access.claimed = True  # _stream logs when it ends, however it ends
            return StreamingResponse(_stream(job, reply, first, req.include_usage, access),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        steps: list[Step] = []
        event: Event | None = first
        while event is not None and event.kind == "step":
            steps.append(event.payload)
            event = await _next_event(job, request)
        if event is None:
            access.log_when_finished(job, 499)
            return JSONResponse({}, status_code=499)
        if event.kind == "error":
            err = from_library(event.payload)
            access.log(err.status, job.generation)
            raise err
        access.log(200, event.payload)
        return JSONResponse(reply.final(event.payload, steps))

    async def _wait_turn(job: Job, request: Request) -> bool:
        """Wait for the worker to take the job; False if the client left. Too long: 503."""
        deadline = job.submitted + config.queue_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                job.cancel()
                raise ApiError(503, f"the request waited over {config.queue_timeout_s:g} s for its "
                               "turn; retry later", code="queue_timeout",
                               headers={"Retry-After": str(config.retry_after_s)})
            event = await _poll(job, request, min(left, 1.0))
            if event is not None:
                return event is not GONE

    async def _next_event(job: Job, request: Request) -> Event | None:
        """The job's next event; None if the client left (the job is then cancelled)."""
        while True:
            event = await _poll(job, request, 1.0)
            if event is not None:
                return None if event is GONE else event

    async def _poll(job: Job, request: Request, timeout: float) -> Event | None:
        """An event, None after ``timeout``, or GONE when the client disconnected."""
        try:
            return await asyncio.wait_for(job.events.get(), timeout)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                return GONE
            return None

    return app


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "blendin-local"}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream(job: Job, reply: Reply, first: Event, include_usage: bool,
                  access: Access) -> AsyncIterator[str]:
    """Server-sent events: a chunk per step, the finish chunk, usage if asked, ``[DONE]``.

    A disconnect cancels this generator (Starlette), which cancels the job at its next token.
    """
    status, ended = 499, False
    event = first
    try:
        while event.kind == "step":
            yield _sse(reply.chunk(event.payload))
            event = await job.events.get()
        ended = True  # "done" or "error": the job has stopped
        if event.kind == "error":
            err = from_library(event.payload)
            status = err.status
            yield _sse(err.body())
        else:
            gen = event.payload
            yield _sse(reply.last_chunk(gen))
            if include_usage:
                yield _sse(reply.usage_chunk(gen))
            status = 200
        yield "data: [DONE]\n\n"
    finally:
        if ended:
            access.log(status, job.generation)
        else:
            job.cancel()  # the client left: stop at the next token
            access.log_when_finished(job, status)


_pending: set[asyncio.Task[None]] = set()  # log tasks still waiting for their job to stop
ACCESS = "blendin.access"  # the scope key of a request's Access


@dataclass
class Access:
    """A request's one access-log line: status, then (for a completion) model, tokens,
    interventions, tok/s; seconds. :class:`AccessLog` makes one for every request and writes it when
    the response is sent, unless a route ``claimed`` the line to write it later itself (a stream, or
    a cancelled generation whose final counts come when it stops)."""

    who: str
    method: str
    path: str
    t0: float
    model: str | None = None
    stream: bool = False
    claimed: bool = False

    @staticmethod
    def of(request: Request) -> Access:
        access: Access = request.scope[ACCESS]
        return access

    def log_when_finished(self, job: Job, status: int) -> None:
        """Log once the (cancelled) job has stopped, with its final counts; at once if it never ran."""
        if job.generation is None:
            self.log(status)
            return
        self.claimed = True

        async def drain() -> None:
            while (await job.events.get()).kind not in ("done", "error"):
                pass
            self.log(status, job.generation)

        task = asyncio.get_running_loop().create_task(drain())
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    def log(self, status: int, gen: Generation | None = None) -> None:
        self.claimed = True
        line = f'{self.who} "{self.method} {self.path}" {status}'
        if self.model is not None:
            line += f" model={self.model} stream={'yes' if self.stream else 'no'}"
        if gen is not None:
            r = gen.result
            line += (f" prompt={r.prompt_tokens} cached={gen.cached_tokens} completion={r.tokens} "
                     f"interventions={r.interventions} tok/s={r.tokens_per_s:.1f} "
                     f"stop={r.stop_reason.value if r.stop_reason else '-'}")
        line += f" {time.monotonic() - self.t0:.2f}s"
        log.info(line)


class AccessLog:
    """ASGI middleware, outermost: every request gets its one access-log line, the ones refused
    before any route (401, 413, 404) and by validation (400, 422) included; a crash that no response
    was started for is logged as the 500 it becomes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        access = Access(f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                        scope["path"], time.monotonic())
        scope[ACCESS] = access
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body") \
                    and not access.claimed:
                access.log(status)  # before the client has the whole answer: tests can count
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if not access.claimed:
                access.log(status)
