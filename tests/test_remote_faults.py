"""Fault paths of the remote methods on a scripted server: Ctrl-C while waiting on a server, the
server's logprob limit (refused or silently capped; failing, or running with what it allows when
asked), a server-rendered template."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from http.server import BaseHTTPRequestHandler

import pytest
from cli_run import interruptible_cli, run_cli

from blendin_local.engines.remote.engine import RemoteError, RemoteModel, RemoteSpec

from fakes.servers import completion_chunk, scripted_server, send_json, send_sse_head

PROMPT = "Why is the sky blue?"
MODELS = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]})}


def test_ctrl_c_closes_the_in_flight_request_and_exits_130():
    closed: list[float] = []

    def slow(h: BaseHTTPRequestHandler, _body: object) -> None:
        send_sse_head(h)
        h.wfile.write(completion_chunk([" Because"]).encode())
        h.wfile.flush()
        # then nothing: wait (bounded) for the client to hang up
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([h.connection], [], [], 0.1)
            if ready and not h.connection.recv(1024):
                closed.append(time.monotonic())
                return

    with scripted_server({**MODELS, "POST /v1/completions": slow}) as (url, _):
        with interruptible_cli("generate", "--method", "base", "--base", f"{url}#m", PROMPT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
            out = b""
            deadline = time.monotonic() + 60
            while b"Because" not in out and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.2)
                if ready:
                    out += os.read(proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
            assert b"Because" in out, "the first token never arrived"
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert closed and closed[0] - sent < 5, "the server never saw the request closed"
    assert (out + rest).decode().startswith(" Because")
    lines = err.decode().strip().splitlines()
    assert "Traceback" not in err.decode() and len(lines) == 1, err
    assert lines[0].startswith("[base] 1 tokens") and lines[0].endswith("stop: interrupted")


def capping(n: int):
    """A completions handler that answers every request with ``n`` alternatives per position."""
    def answer(h: BaseHTTPRequestHandler, body: dict) -> None:
        send_sse_head(h)
        h.wfile.write(completion_chunk(["a"] * body["max_tokens"], top_k=n).encode() + b"data: [DONE]\n\n")
    return answer


def refusing(limit: int, asked: list[int]):
    """vLLM's answer to more logprobs than its --max-logprobs: 400 naming the limit."""
    def answer(h: BaseHTTPRequestHandler, body: dict) -> None:
        asked.append(body["logprobs"])
        if body["logprobs"] > limit:
            send_json(h, 400, {"object": "error", "message": f"Requested sample logprobs of "
                               f"{body['logprobs']}, which is greater than max allowed: {limit}"})
        else:
            capping(limit)(h, body)
    return answer


def model_at(url: str, **kw: object) -> RemoteModel:
    return RemoteModel(RemoteSpec(url, "m"), retries=0, timeout=5.0, **kw)  # type: ignore[arg-type]


def test_a_silent_logprob_cap_fails_in_one_line_or_runs_when_allowed():
    with scripted_server({"POST /v1/completions": capping(20)}) as (url, _):
        with pytest.raises(RemoteError) as exc:
            list(model_at(url).stream("q", max_tokens=2, logprobs=100))
        message = str(exc.value)
        assert "\n" not in message
        assert "returned 20 logprobs where 100 were asked" in message
        assert "start vLLM with --max-logprobs 100, or pass --allow-fewer-logprobs" in message
        model = model_at(url, allow_fewer_logprobs=True)
        assert len(list(model.stream("q", max_tokens=2, logprobs=100))) == 2
        assert model.report()["logprobs_allowed"] == 20


def test_duplicate_strings_are_not_taken_for_a_cap():
    with scripted_server({"POST /v1/completions": capping(98)}) as (url, _):
        model = model_at(url)
        assert len(list(model.stream("q", max_tokens=1, logprobs=100))) == 1
        assert "logprobs_allowed" not in model.report()


def test_a_refused_logprob_count_is_learned_when_allowed():
    asked: list[int] = []
    with scripted_server({"POST /v1/completions": refusing(20, asked)}) as (url, _):
        model = model_at(url, allow_fewer_logprobs=True)
        assert [p.text for p in model.stream("q", max_tokens=1, logprobs=100)] == ["a"]
        assert [p.text for p in model.stream("q", max_tokens=1, logprobs=100)] == ["a"]
    assert asked == [100, 20, 20]  # refused once, then the limit is asked directly
    assert model.report()["logprobs_allowed"] == 20


def test_the_logprob_limit_through_the_cli():
    asked: list[int] = []
    handlers = {**MODELS, "POST /v1/completions": refusing(20, asked)}
    args = ["generate", "--base", "{}#m", "--support", "top100", "--max-tokens", "3", "--json",
            "--gamma", "0.5", PROMPT]
    with scripted_server(handlers) as (url, _):
        cli_args = [a.format(url) for a in args]
        refused = run_cli(*cli_args)
        allowed = run_cli(*cli_args, "--allow-fewer-logprobs")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: the server at {url} allows 20 logprobs (Requested sample logprobs of 100, which is "
        "greater than max allowed: 20); start vLLM with --max-logprobs 100, or pass "
        "--allow-fewer-logprobs"]
    assert allowed.returncode == 0, allowed.stderr
    result = json.loads(allowed.stdout)
    assert result["text"] == "aaa" and result["remote"]["base"]["logprobs_allowed"] == 20


def test_a_server_rendered_template_is_used_for_the_guide():
    prompts: list[str] = []

    def template(h: BaseHTTPRequestHandler, body: dict) -> None:
        user = body["messages"][-1]["content"]
        send_json(h, 200, {"prompt": f"<bos><|user|>{user}<|assistant|>"})

    def complete(h: BaseHTTPRequestHandler, body: dict) -> None:
        prompts.append(body["prompt"])
        send_sse_head(h)
        h.wfile.write(json.dumps({"choices": [{"text": "ok", "finish_reason": "stop"}]}).join(
            ["data: ", "\n\n"]).encode() + b"data: [DONE]\n\n")

    handlers = {**MODELS, "POST /apply-template": template, "POST /v1/completions": complete}
    with scripted_server(handlers) as (url, seen):
        proc = run_cli("generate", "--method", "guide", "--guide", f"{url}#m", PROMPT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "warning" not in proc.stderr
    # the server adds BOS itself: the rendered one is dropped
    assert prompts == [f"<|user|>{PROMPT}<|assistant|>"]
    assert seen.count("POST /apply-template") == 2  # the check at start, then this conversation


# --- a server that answers garbage (issue 16, item 2): the answer ends only on a finish_reason ----
def raw(head: bytes, body: bytes):
    """A completions handler that answers ``body`` after the status line and headers ``head``, then
    closes the connection (no Content-Length: the body ends where the connection does)."""
    def answer(h: BaseHTTPRequestHandler, _body: object) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n" + head + b"Connection: close\r\n\r\n" + body)
        h.wfile.flush()
        h.close_connection = True
    return answer


SSE = b"Content-Type: text/event-stream\r\n"
JSON = b"Content-Type: application/json\r\n"
TWO = (completion_chunk([" Because"]) + completion_chunk([" light"])).encode()
GARBAGE = [  # (headers, body, what the one-line error says, the text printed before it)
    (SSE, b'data: {"choices": [\n\n', "sent a completions chunk that is not JSON: '{\"choices\": ['", ""),
    (SSE, TWO + b"data: {oops\n\n", "not JSON: '{oops'", " Because light"),
    (SSE, b"", "answered /completions with no server-sent events (no 'data:' line); it sent ''", ""),
    (SSE, b": ping\n\n", "no server-sent events (no 'data:' line); it sent ': ping\\n\\n'", ""),
    (JSON, b'{"choices": [{"text": " Because", "finish_reason": "stop"}]}',
     "no server-sent events (no 'data:' line); it sent '{\"choices\": [{\"text\": \" Because\"", ""),
    (b"Content-Type: text/html\r\n", b"<html>hello</html>", "it sent '<html>hello</html>\\n'", ""),
    (SSE, TWO, "ended its stream after 2 tokens without a finish_reason or 'data: [DONE]'; it sent "
     "'data: {", " Because light"),
    (SSE, b"data: [DONE]\n\n", "ended its answer after 0 of 8 tokens without a finish_reason", ""),
    (SSE, TWO + b"data: [DONE]\n\n", "ended its answer after 2 of 8 tokens without a finish_reason",
     " Because light"),
]


@pytest.mark.parametrize(("head", "body", "needle", "printed"), GARBAGE)
def test_a_base_that_answers_garbage_is_an_error_naming_the_server(head, body, needle, printed):
    with scripted_server({**MODELS, "POST /v1/completions": raw(head, body)}) as (url, _):
        proc = run_cli("generate", "--method", "base", "--base", f"{url}#m", "--max-tokens", "8",
                       PROMPT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {url} ") and needle in lines[0], lines
    assert proc.stdout.rstrip("\n") == printed


@pytest.mark.parametrize(("head", "body", "needle", "printed"), [
    (SSE, b"", "no server-sent events", ""),
    (SSE, b"data: [DONE]\n\n", "ended its answer after 0 of 8 chunks without a finish_reason", ""),
    (SSE, TWO, "ended its stream after 2 chunks without a finish_reason", " Because light"),
])
def test_a_guide_that_answers_garbage_is_an_error_naming_the_server(head, body, needle, printed):
    with scripted_server({**MODELS, "POST /v1/completions": raw(head, body)}) as (url, _):
        proc = run_cli("generate", "--method", "guide", "--guide", f"{url}#m", "--guide-template",
                       "plain", "--max-tokens", "8", PROMPT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {url} ") and needle in lines[0], lines
    assert proc.stdout.rstrip("\n") == printed


def ended(finish: str | None) -> bytes:
    end = {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}]}
    return f"data: {json.dumps(end)}\n\n".encode()


@pytest.mark.parametrize(("tail", "done"), [
    (ended("stop") + b"data: [DONE]\n\n", True),  # llama-cpp-python, llama-server, vLLM
    (ended("stop"), True),  # a finish_reason and no [DONE]: ended all the same
    (ended(None) + b"data: [DONE]\n\n", False),  # a [DONE] alone says nothing of why
])
def test_only_a_finish_reason_ends_the_answer(tail, done):
    with scripted_server({"POST /v1/completions": raw(SSE, TWO + tail)}) as (url, _):
        stream = model_at(url).stream("q", max_tokens=8, logprobs=2)
        if done:
            assert [p.text for p in stream] == [" Because", " light"]
        else:
            with pytest.raises(RemoteError, match="after 2 of 8 tokens without a finish_reason"):
                list(stream)


@pytest.mark.parametrize(("finish", "ended"), [("stop", True), ("length", False)])
def test_a_stop_on_the_last_token_asked_ends_the_text(finish, ended):
    """A chunk of exactly the tokens asked that ends on ``stop`` is the model's end, not a chunk
    used up (read as used up it cost one more request; seen when the sizer asked 2 tokens)."""
    body = completion_chunk([" Because"]) + completion_chunk([" light"], finish=finish)
    with scripted_server({"POST /v1/completions": raw(SSE, body.encode() + b"data: [DONE]\n\n")}) as (url, _):
        model = model_at(url)
        assert [p.text for p in model.stream("q", max_tokens=2, logprobs=2)] == [" Because", " light"]
        assert model.ended_early(2, 2) is ended


def test_a_paper_step_with_no_token_and_no_reason_is_an_error():
    from blendin_local.paper.steps import ask

    empty = {"choices": [{"text": "", "index": 0, "logprobs": None}]}
    bodies = {"POST /v1/completions": lambda h, _: send_json(h, 200, empty)}
    with scripted_server(bodies) as (url, _), pytest.raises(RemoteError) as exc:
        ask(model_at(url), "q")
    assert str(exc.value) == (f"{url} answered with no token and no finish_reason: "
                              f"{json.dumps(empty)[:80]!r}")
    stopped = {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}
    with scripted_server({"POST /v1/completions": lambda h, _: send_json(h, 200, stopped)}) as (url, _):
        assert ask(model_at(url), "q").finish_reason == "stop"


def test_a_paper_step_that_is_not_json_quotes_what_came():
    from blendin_local.paper.steps import ask

    with scripted_server({"POST /v1/completions": raw(JSON, b"<html>busy</html>")}) as (url, _):
        with pytest.raises(RemoteError) as exc:
            ask(model_at(url), "q")
    assert str(exc.value) == (f"{url} answered /completions with something that is not JSON: "
                              "b'<html>busy</html>'")
