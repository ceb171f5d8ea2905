"""The HTTP layer on fake engines (fast): error statuses and shapes, auth, limits, the queue, and
cancellation on disconnect. Real uvicorn servers on loopback; raw requests through httpx."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import openai
import pytest
from serve_helpers import API_KEY, SlowGeneration, running

from blendin_local.generation.generate import Generation
from blendin_local.generation.steps import StopReason
from blendin_local.serve.app import ServeConfig, create_app
from blendin_local.settings import GenerationSettings

from fakes import FakeEngine, cross_pair

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = {"model": "blendin", "messages": [{"role": "user", "content": "the a b"}], "max_tokens": 8}
DEFAULTS = GenerationSettings(reuse_cache=True, max_tokens=16)


def config(**kw: object) -> ServeConfig:
    return ServeConfig(**{"defaults": DEFAULTS, "api_key": API_KEY, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running(create_app(cross_pair(), config(max_body_bytes=4096, max_tokens_limit=64,
                                                 max_prompt_chars=500))) as base:
        yield base


def post(url: str, body: object, *, headers: dict[str, str] | None = None, raw: bytes | None = None,
         path: str = "/v1/chat/completions") -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(url + path, content=content, timeout=30,
                      headers={"Content-Type": "application/json", **AUTH, **(headers or {})})


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] and err["message"]
    assert "Traceback" not in r.text
    for w in words:
        assert w in err["message"]


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    ({**CHAT, "model": "gpt-4"}, 404, "model_not_found", ("gpt-4", "blendin")),
    ({**CHAT, "gamma": -0.5}, 422, "invalid_value", ("gamma must be a number >= 0", "-0.5")),
    ({**CHAT, "messages": []}, 422, "invalid_value", ("messages",)),
    ({**CHAT, "messages": [{"role": "assistant", "content": "hi"}]}, 422, "invalid_value", ("user",)),
    ({**CHAT, "max_tokens": 65}, 422, "invalid_value", ("max_tokens", "64")),
    ({**CHAT, "n": 2}, 422, "invalid_value", ("n",)),
    ({**CHAT, "alpha": 1.5}, 422, "invalid_value", ("alpha",)),
    ({**CHAT, "cap": 0}, 422, "invalid_value", ("cap",)),
    ({**CHAT, "method": "magic"}, 422, "invalid_value", ("method", "magic")),
    ({**CHAT, "temperature": -1}, 422, "invalid_value", ("temperature",)),
    ({**CHAT, "messages": [{"role": "user", "content": "a" * 501}]}, 400, "context_length_exceeded",
     ("500",)),
    # issue 16, item 6: the library's limits (the CLI's, with its messages), JSON types as written
    ({**CHAT, "seed": -1}, 422, "invalid_value", ("seed must be an integer from 0 to 4294967295, got -1",)),
    ({**CHAT, "seed": 2**32}, 422, "invalid_value", ("seed must be an integer from 0 to 4294967295",)),
    ({**CHAT, "seed": 1e20}, 422, "invalid_value", ("seed", "integer")),
    ({**CHAT, "seed": "7"}, 422, "invalid_value", ("seed", "integer")),
    ({**CHAT, "max_tokens": "4"}, 422, "invalid_value", ("max_tokens", "integer")),
    ({**CHAT, "max_tokens": True}, 422, "invalid_value", ("max_tokens", "integer")),
    ({**CHAT, "max_tokens": 4.0}, 422, "invalid_value", ("max_tokens", "integer")),
    ({**CHAT, "max_tokens": 0}, 422, "invalid_value", ("max_tokens must be an integer >= 1, got 0",)),
    ({**CHAT, "max_completion_tokens": 0}, 422, "invalid_value", ("max_tokens must be an integer >= 1",)),
    ({**CHAT, "max_completion_tokens": "8"}, 422, "invalid_value", ("max_completion_tokens",)),
    ({**CHAT, "temperature": "0.5"}, 422, "invalid_value", ("temperature", "number")),
    ({**CHAT, "temperature": False}, 422, "invalid_value", ("temperature",)),
    ({**CHAT, "top_p": 0}, 422, "invalid_value", ("top_p must be a number in (0, 1], got 0",)),
    ({**CHAT, "gamma": "0.3"}, 422, "invalid_value", ("gamma",)),
    ({**CHAT, "cap": True}, 422, "invalid_value", ("cap",)),
    ({**CHAT, "alpha": "0.5"}, 422, "invalid_value", ("alpha",)),
    ({**CHAT, "stream": "yes"}, 422, "invalid_value", ("stream", "boolean")),
    ({**CHAT, "n": "1"}, 422, "invalid_value", ("n",)),
    ({**CHAT, "logprobs": 1}, 422, "invalid_value", ("logprobs", "boolean")),
    ({**CHAT, "messages": [{"role": "user", "content": 5}]}, 422, "invalid_value", ("messages",)),
    ({**CHAT, "stream_options": {"include_usage": "yes"}}, 422, "invalid_value", ("include_usage",)),
])
def test_bad_requests_get_a_status_and_a_message(url: str, body: dict, status: int, code: str,
                                                  words: tuple[str, ...]) -> None:
    assert_error(post(url, body), status, code, *words)


@pytest.mark.parametrize("body", [
    {**CHAT, "temperature": 1, "seed": 2**32 - 1},  # a JSON integer is a number; the largest seed
    {**CHAT, "gamma": 2},  # > 1: every step intervenes, as on the command line
    {**CHAT, "max_completion_tokens": 2, "top_p": 1, "cap": 1, "alpha": 0},
])
def test_values_the_cli_accepts_are_accepted(url: str, body: dict) -> None:
    r = post(url, body)
    assert r.status_code == 200, r.text


def test_completions_take_the_same_limits(url: str) -> None:
    text = {"model": "base", "prompt": "the a", "max_tokens": 4}
    for bad, words in [({"seed": -1}, "seed must be"), ({"max_tokens": "4"}, "max_tokens"),
                       ({"logprobs": True}, "logprobs"), ({"prompt": 5}, "prompt")]:
        assert_error(post(url, {**text, **bad}, path="/v1/completions"), 422, "invalid_value", words)
    assert post(url, text, path="/v1/completions").status_code == 200


def test_malformed_json_is_400(url: str) -> None:
    assert_error(post(url, None, raw=b'{"model": "blendin", "messages": ['), 400, "invalid_json", "JSON")
    assert_error(post(url, None, raw=b"[1, 2]"), 400, "invalid_json")


def test_wrong_or_missing_key_is_401_on_every_route(url: str) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": ""}):
        assert_error(post(url, CHAT, headers=headers), 401, "invalid_api_key", "API key")
        assert_error(httpx.get(url + "/v1/models", headers=headers), 401, "invalid_api_key")
        assert_error(httpx.get(url + "/anything", headers=headers), 401, "invalid_api_key")


def test_oversized_body_is_413_announced_or_streamed(url: str) -> None:
    big = {**CHAT, "user": "x" * 5000}
    assert_error(post(url, big), 413, "body_too_large", "4096")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r = httpx.post(url + "/v1/chat/completions", content=chunks(), timeout=30,
                   headers={"Content-Type": "application/json", **AUTH})
    assert_error(r, 413, "body_too_large")


def test_unknown_route_is_404_in_openai_shape(url: str) -> None:
    assert_error(httpx.get(url + "/v2/nothing", headers=AUTH), 404, "not_found")


def test_chat_streamed_and_not_agree_and_carry_blendin_data(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    messages = [{"role": "user", "content": "the a b"}]
    whole = client.chat.completions.create(model="blendin", messages=messages, max_tokens=8,
                                           extra_body={"gamma": 1.0})
    chunks = list(client.chat.completions.create(model="blendin", messages=messages, max_tokens=8,
                                                 stream=True, extra_body={"gamma": 1.0},
                                                 stream_options={"include_usage": True}))
    steps = [c.model_extra["blendin"]["step"] for c in chunks if c.choices and c.choices[0].delta.content
             is not None and "step" in (c.model_extra or {}).get("blendin", {})]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [s["index"] for s in steps] == list(range(len(steps))) == \
        [s["index"] for s in whole.model_extra["blendin"]["steps"]]
    assert all(s["intervened"] for s in steps)  # gamma 1: every step blends
    result = whole.model_extra["blendin"]["result"]
    assert result["interventions"] == whole.usage.completion_tokens == len(steps)
    assert result["settings"]["gamma"] == 1.0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(steps)
    assert {c.id for c in chunks} == {chunks[0].id}


def test_logprobs_are_those_of_the_final_distribution(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    r = client.chat.completions.create(model="blendin", messages=[{"role": "user", "content": "the"}],
                                       max_tokens=6, logprobs=True, top_logprobs=3)
    steps = r.model_extra["blendin"]["steps"]
    content = r.choices[0].logprobs.content
    assert len(content) == len(steps)
    for lp, step in zip(content, steps, strict=True):
        assert lp.logprob == pytest.approx(__import__("math").log(step["p_token"]))
        assert len(lp.top_logprobs) == 3
        assert [t.logprob for t in lp.top_logprobs] == sorted((t.logprob for t in lp.top_logprobs),
                                                               reverse=True)
        assert lp.top_logprobs[0].logprob >= lp.logprob  # greedy picks the top one
    plain = client.completions.create(model="base", prompt="the", max_tokens=4, logprobs=2)
    assert len(plain.choices[0].logprobs.tokens) == plain.usage.completion_tokens
    assert all(len(t) <= 2 for t in plain.choices[0].logprobs.top_logprobs)


def test_a_followup_turn_reuses_the_cached_prompt(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    first = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the a"}]
    r1 = client.chat.completions.create(model="base", messages=first, max_tokens=4)
    turn2 = [*first, {"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "b c"}]
    r2 = client.chat.completions.create(model="base", messages=turn2, max_tokens=4)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert r1.usage.prompt_tokens - 2 <= cached < r2.usage.prompt_tokens


# --- the queue ------------------------------------------------------------------------------------

def slow_pair_app(made: list[Generation], **kw: object):  # -> FastAPI
    def slow(pair, conv, settings):  # type: ignore[no-untyped-def]
        gen = SlowGeneration(pair, conv, settings)
        made.append(gen)
        return gen

    return create_app(cross_pair(), config(**kw), generate_fn=slow)


def stream_in_thread(url: str, body: dict, seen: list[str], n_chunks: int | None = None) -> threading.Thread:
    """Stream ``body``; stop reading (disconnect) after ``n_chunks`` data lines if given."""

    def run() -> None:
        with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True},
                          headers=AUTH, timeout=60) as r:
            seen.append(f"status {r.status_code}")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(line)
                    if n_chunks is not None and len(seen) > n_chunks:
                        return  # closes the connection mid-stream

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def logged_statuses(caplog: pytest.LogCaptureFixture) -> list[int]:
    return sorted(int(line.split('" ')[1].split()[0]) for line in access_lines(caplog))


def test_a_full_queue_gets_429_with_retry_after(caplog) -> None:
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    made: list[Generation] = []
    with running(slow_pair_app(made, queue_size=1)) as url:
        running_seen: list[str] = []
        a = stream_in_thread(url, {**CHAT, "max_tokens": 40, "gamma": 0}, running_seen)
        wait_until(lambda: len(running_seen) > 1)  # A decodes
        waiting_seen: list[str] = []
        b = stream_in_thread(url, CHAT, waiting_seen)
        wait_until(lambda: len(made) == 1 and "status" not in "".join(waiting_seen)
                   and b.is_alive())
        time.sleep(0.3)  # B reaches the queue
        r = post(url, CHAT)
        assert_error(r, 429, "queue_full", "busy")
        assert r.headers["Retry-After"] == "5"
        a.join(30)
        b.join(30)
        assert waiting_seen[0] == "status 200" and waiting_seen[-1] == "data: [DONE]"
    assert logged_statuses(caplog) == [200, 200, 429]


def test_waiting_too_long_is_503(caplog) -> None:
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    made: list[Generation] = []
    with running(slow_pair_app(made, queue_timeout_s=0.3)) as url:
        seen: list[str] = []
        a = stream_in_thread(url, {**CHAT, "max_tokens": 30, "gamma": 0}, seen)
        wait_until(lambda: len(seen) > 1)
        r = post(url, CHAT)
        assert_error(r, 503, "queue_timeout", "waited")
        assert "Retry-After" in r.headers
        a.join(30)
        assert seen[-1] == "data: [DONE]"
        assert len(made) == 1  # the timed-out request never ran
    assert logged_statuses(caplog) == [200, 503]


def test_a_client_that_disconnects_cancels_its_generation() -> None:
    made: list[Generation] = []
    with running(slow_pair_app(made)) as url:
        seen: list[str] = []
        body = {**CHAT, "max_tokens": 60, "gamma": 0, "stop": ["never-said"]}
        stream_in_thread(url, body, seen, n_chunks=3).join(30)
        wait_until(lambda: made and made[0].stop_reason is not None)
        assert made[0].stop_reason is StopReason.CANCELLED
        assert made[0].result.tokens < 30
        r = post(url, {**CHAT, "max_tokens": 3})  # the worker is free again
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


def test_fresh_cache_setting_is_per_server() -> None:
    pair = cross_pair()
    fresh = replace(DEFAULTS, reuse_cache=False)
    with running(create_app(pair, config(defaults=fresh))) as url:
        for _ in range(2):
            r = post(url, CHAT).json()
            assert r["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_crash_is_500_without_internals() -> None:
    def broken(pair, conv, settings):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    with running(create_app(cross_pair(), config(), generate_fn=broken)) as url:
        r = post(url, CHAT)
        assert_error(r, 500, "internal_error", "server")
        assert "secret" not in r.text
        assert post(url, {**CHAT, "stream": True}).status_code == 500



# --- a generation that fails or ends early leaves the worker and the KV caches usable -------------
def answer(url: str, body: dict, *, stream: bool) -> str:
    """The answer text of a request that must succeed, streamed or not."""
    r = post(url, {**body, "stream": stream})
    assert r.status_code == 200, r.text
    if not stream:
        return r.json()["choices"][0]["message"]["content"]
    events = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]") and not any("error" in e for e in events)
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])


def test_a_prompt_repeated_after_a_two_token_answer_gets_the_same_answer() -> None:
    # The two-token answer leaves prompt + one token cached; the next request rolled that token
    # back, found the prompt cached whole and read the dropped token's logits row: a wrong answer
    # on llama.cpp, a 500 on the fake engine (which keeps no row after a rollback).
    with running(create_app(cross_pair(), config())) as url:
        expected = answer(url, CHAT, stream=False)
        for stream in (False, True, False):
            assert answer(url, {**CHAT, "max_tokens": 2}, stream=stream)
            assert answer(url, CHAT, stream=stream) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_a_generation_failing_in_the_worker_is_one_error_and_later_requests_work(
        stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    pair = cross_pair()
    base = pair.base
    assert isinstance(base, FakeEngine)
    with running(create_app(pair, config())) as url:
        expected = answer(url, CHAT, stream=False)
        caplog.set_level(logging.INFO, logger="blendin_local.serve")
        base.fail_at_call = base.eval_calls + 3  # the prompt, one token, then a failed decode
        r = post(url, {**CHAT, "stream": stream})
        if stream:  # the 200 was sent with the first chunk: the error comes as the last event
            assert r.status_code == 200
            events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            assert events[-1]["error"]["code"] == "internal_error" and len(events) >= 2
            assert r.text.rstrip().endswith("data: [DONE]") and "Traceback" not in r.text
        else:
            assert_error(r, 500, "internal_error", "server")
            assert "llama_decode" not in r.text
        errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert [rec.getMessage() for rec in errors] == ["generation failed"]
        wait_until(lambda: access_lines(caplog))  # a stream's line comes once it has ended
        assert access_lines(caplog)[0].split('" ')[1].startswith("500 ")
        for again in (False, True, False, True):
            assert answer(url, CHAT, stream=again) == expected


# --- the access log (issue 16, item 7): one line per request, refused ones included ---------------
def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "blendin_local.serve"
            and '"' in r.getMessage()]


def test_every_request_gets_one_log_line_with_its_status(url: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    sent = [
        (lambda: post(url, CHAT, headers={"Authorization": "Bearer nope"}), "POST /v1/chat/completions", 401),
        (lambda: httpx.get(url + "/v1/models", headers={}), "GET /v1/models", 401),
        (lambda: post(url, {**CHAT, "user": "x" * 5000}), "POST /v1/chat/completions", 413),
        (lambda: post(url, None, raw=b"{oops"), "POST /v1/chat/completions", 400),
        (lambda: httpx.get(url + "/v2/nothing", headers=AUTH), "GET /v2/nothing", 404),
        (lambda: post(url, {**CHAT, "model": "gpt-4"}), "POST /v1/chat/completions", 404),
        (lambda: post(url, {**CHAT, "seed": -1}), "POST /v1/chat/completions", 422),
        (lambda: post(url, {**CHAT, "max_tokens": "4"}), "POST /v1/chat/completions", 422),
        (lambda: httpx.delete(url + "/v1/models", headers=AUTH), "DELETE /v1/models", 405),
        (lambda: httpx.get(url + "/v1/models", headers=AUTH), "GET /v1/models", 200),
        (lambda: post(url, CHAT), "POST /v1/chat/completions", 200),
    ]
    for request, route, status in sent:
        assert request().status_code == status, route
    lines = access_lines(caplog)
    assert len(lines) == len(sent), lines
    for line, (_, route, status) in zip(lines, sent, strict=True):
        assert re.fullmatch(rf'127\.0\.0\.1:\d+ "{route}" {status} .*\d+\.\d\ds', line), line
    assert "model=gpt-4 stream=no" in lines[5] and "model=blendin" in lines[6]
    assert "completion=" in lines[-1] and "interventions=" in lines[-1]
