"""Remote models (``blendin_local.engines.remote``): the completions protocol against a real llama-cpp-python
server holding the default base, and every fault path against a scripted server — each a one-line
``RemoteError``."""

from __future__ import annotations

import itertools
import time
from http.server import BaseHTTPRequestHandler

import pytest

from blendin_local.engines.remote.engine import (
    Position,
    RemoteError,
    RemoteModel,
    RemoteSpec,
    parse_positions,
)
from blendin_local.errors import UsageError

from fakes.servers import completion_chunk, free_port, scripted_server, send_json, send_sse_head

PROMPT = "Question: What is the capital of France?\nAnswer:"
MODELS = {"GET /v1/models": lambda h, _: send_json(h, 200, {"object": "list", "data": [{"id": "m"}]})}


def model_at(url: str, name: str = "m", **kw: object) -> RemoteModel:
    kw = {"retries": 2, "backoff_s": 0.01, "timeout": 5.0, **kw}
    return RemoteModel(RemoteSpec(url, name), **kw)  # type: ignore[arg-type]


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# --- specs and parsing ------------------------------------------------------------------------
def test_spec_parses_url_and_model():
    assert RemoteSpec.parse("http://gpu:8000/v1#meta-llama/Llama-3.1-70B") == RemoteSpec(
        "http://gpu:8000/v1", "meta-llama/Llama-3.1-70B")
    assert RemoteSpec.parse("https://h/v1/", "m") == RemoteSpec("https://h/v1", "m")
    assert RemoteSpec.is_remote("http://x") and not RemoteSpec.is_remote("models/a.gguf")
    with pytest.raises(UsageError, match="name the served model"):
        RemoteSpec.parse("http://gpu:8000/v1")
    with pytest.raises(UsageError, match="not an http"):
        RemoteSpec.parse("ftp://gpu/v1#m")


def test_positions_are_validated_and_later_duplicates_win():
    choice = {"text": "ab", "logprobs": {
        "tokens": ["a", "b"], "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"a": -0.5, "c": -2.0}, {"b": -1.0}]}}
    first, second = parse_positions(choice)
    assert first == Position("a", -0.5, {"a": -0.5, "c": -2.0})
    assert second.top1_prob == pytest.approx(0.36787944)
    import json
    dup = json.loads('{"x": -0.1, "x": -3.0}')  # the reference's dict: the later rank overwrites
    assert dup == {"x": -3.0}
    bad = [
        {"logprobs": {"tokens": ["a"], "token_logprobs": ["x"], "top_logprobs": [{}]}},
        {"logprobs": {"tokens": ["a"], "token_logprobs": [True], "top_logprobs": [{}]}},
        {"logprobs": {"tokens": [1], "token_logprobs": [-1.0], "top_logprobs": [{}]}},
        {"logprobs": {"tokens": ["a", "b"], "token_logprobs": [-1.0], "top_logprobs": [{}]}},
        {"logprobs": {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [{"a": None}]}},
        {"logprobs": "nope"},
        "nope",
    ]
    for b in bad:
        with pytest.raises(ValueError):
            parse_positions(b)


# --- the real server ---------------------------------------------------------------------------
@pytest.mark.integration
def test_real_server_streams_positions_and_counts_traffic(gemma_server):
    model = model_at(gemma_server, "gemma3-270m", timeout=120.0)
    model.check()
    positions = list(model.stream(PROMPT, max_tokens=4, logprobs=5))
    assert len(positions) == 4
    assert positions[0].text == " Paris"
    assert all(len(p.top) == 5 and p.text in p.top for p in positions)
    assert all(0 < p.top1_prob <= 1 for p in positions)
    assert model.traffic.requests == 2 and model.traffic.bytes_received > 500
    model.close()


@pytest.mark.integration
def test_real_server_closing_the_stream_early_stops_reading(gemma_server):
    model = model_at(gemma_server, "gemma3-270m", timeout=120.0)
    full = list(model.stream(PROMPT, max_tokens=12, logprobs=3))
    full_bytes = model.traffic.bytes_received
    stream = model.stream(PROMPT, max_tokens=12, logprobs=3)
    head = list(itertools.islice(stream, 3))
    stream.close()
    assert [p.text for p in head] == [p.text for p in full[:3]]
    assert model.traffic.bytes_received - full_bytes < full_bytes
    model.close()


@pytest.mark.integration
def test_real_server_one_chunk_equals_one_request_per_token(gemma_server):
    """Greedy text from one streamed request equals the paper's loop: one one-token request per
    step, the text so far re-sent each time."""
    model = model_at(gemma_server, "gemma3-270m", timeout=120.0)
    chunk = [p.text for p in model.stream(PROMPT, max_tokens=8, logprobs=3)]
    text, stepwise = PROMPT, []
    for _ in range(8):
        position = model.next_position(text, logprobs=3)
        assert position is not None
        stepwise.append(position.text)
        text += position.text
    assert chunk == stepwise
    model.close()


# --- fault paths on a scripted server -----------------------------------------------------------
def test_server_down_is_one_line():
    with pytest.raises(RemoteError) as exc:
        model_at(f"http://127.0.0.1:{free_port()}/v1").check()
    assert "connection refused" in one_line(exc) and "is the server running" in str(exc.value)


def test_5xx_is_retried_with_backoff_then_succeeds():
    calls = itertools.count()

    def flaky(h: BaseHTTPRequestHandler, _: object) -> None:
        if next(calls) < 2:
            send_json(h, 503, {"error": {"message": "loading"}})
        else:
            send_sse_head(h)
            h.wfile.write(completion_chunk(["a"]).encode() + b"data: [DONE]\n\n")

    with scripted_server({"POST /v1/completions": flaky}) as (url, seen):
        model = model_at(url)
        assert [p.text for p in model.stream("q", max_tokens=1, logprobs=2)] == ["a"]
        assert seen.count("POST /v1/completions") == 3 and model.traffic.requests == 3


def test_5xx_that_persists_is_one_line():
    always = {"POST /v1/completions": lambda h, _: send_json(h, 500, {"error": {"message": "boom"}})}
    with scripted_server(always) as (url, seen), pytest.raises(RemoteError) as exc:
        list(model_at(url).stream("q", max_tokens=1, logprobs=2))
    assert "answered 500" in one_line(exc) and "boom" in str(exc.value)
    assert len(seen) == 3  # the first try and two retries


@pytest.mark.parametrize(("status", "body", "needle"), [
    (401, {"error": {"message": "bad key"}}, "refused the request (401)"),
    (404, {"error": {"message": "The model `m` does not exist."}}, "does not serve model 'm'"),
    (404, {"detail": "Not Found"}, "is not an OpenAI-compatible server (404 on /completions)"),
    (400, {"error": {"message": "Requested sample logprobs of 100, which is greater than max "
                                "allowed: 20"}}, "allows 20 logprobs"),
])
def test_refusals_are_one_line(status, body, needle):
    handlers = {"POST /v1/completions": lambda h, _: send_json(h, status, body)}
    with scripted_server(handlers) as (url, _), pytest.raises(RemoteError) as exc:
        list(model_at(url).stream("q", max_tokens=1, logprobs=100))
    assert needle in one_line(exc)


def test_wrong_model_name_is_caught_by_check():
    with scripted_server(MODELS) as (url, _), pytest.raises(RemoteError) as exc:
        model_at(url, "other").check()
    assert "does not serve model 'other' (it serves: m)" in one_line(exc)


def test_a_url_that_is_not_an_openai_server():
    page = {"GET /v1/models": lambda h, _: (h.send_response(200), h.end_headers(),
                                            h.wfile.write(b"<html>hello</html>"))}
    with scripted_server(page) as (url, _), pytest.raises(RemoteError) as exc:
        model_at(url).check()
    assert "is not an OpenAI-compatible server" in one_line(exc)


def test_a_server_that_returns_no_logprobs():
    def plain(h: BaseHTTPRequestHandler, _: object) -> None:
        send_sse_head(h)
        h.wfile.write(completion_chunk(["a"], logprobs=False).encode())

    with scripted_server({"POST /v1/completions": plain}) as (url, _), pytest.raises(RemoteError) as exc:
        list(model_at(url).stream("q", max_tokens=1, logprobs=2))
    assert "returned no logprobs" in one_line(exc)


def test_a_connection_dropped_mid_stream():
    def dropping(h: BaseHTTPRequestHandler, _: object) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", "100000")  # promises more than it sends
        h.end_headers()
        h.wfile.write((completion_chunk(["a"]) + completion_chunk(["b"])).encode())
        h.wfile.flush()
        h.close_connection = True

    with scripted_server({"POST /v1/completions": dropping}) as (url, _):
        got: list[str] = []
        with pytest.raises(RemoteError) as exc:
            for p in model_at(url).stream("q", max_tokens=5, logprobs=2):
                got.append(p.text)
    assert got == ["a", "b"]
    assert "dropped mid-stream after 2 tokens" in one_line(exc)


def test_a_slow_server_times_out_in_one_line():
    def slow(h: BaseHTTPRequestHandler, _: object) -> None:
        time.sleep(2.0)
        send_json(h, 200, {})

    with scripted_server({"POST /v1/completions": slow}) as (url, _), pytest.raises(RemoteError) as exc:
        list(model_at(url, timeout=0.5).stream("q", max_tokens=1, logprobs=2))
    assert "did not answer within 0.5 s" in one_line(exc)


def test_a_chunk_of_the_wrong_shape():
    def wrong(h: BaseHTTPRequestHandler, _: object) -> None:
        send_sse_head(h)
        h.wfile.write(b'data: {"choices": [{"text": "a", "logprobs": {"tokens": ["a"], '
                      b'"token_logprobs": ["high"], "top_logprobs": [{}]}}]}\n\n')

    with scripted_server({"POST /v1/completions": wrong}) as (url, _), pytest.raises(RemoteError) as exc:
        list(model_at(url).stream("q", max_tokens=1, logprobs=2))
    assert "not OpenAI's shape: a token logprob is not a number" in one_line(exc)


def test_the_api_key_is_sent_as_bearer(monkeypatch):
    seen_keys: list[str | None] = []

    def record(h: BaseHTTPRequestHandler, _: object) -> None:
        seen_keys.append(h.headers.get("Authorization"))
        send_json(h, 200, {"data": [{"id": "m"}]})

    with scripted_server({"GET /v1/models": record}) as (url, _):
        model_at(url, api_key="sk-1").check()
        monkeypatch.setenv("BLENDIN_REMOTE_API_KEY", "sk-env")
        model_at(url).check()
        monkeypatch.delenv("BLENDIN_REMOTE_API_KEY")
        model_at(url).check()
    assert seen_keys == ["Bearer sk-1", "Bearer sk-env", None]

