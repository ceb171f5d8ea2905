"""``serve --parallel N``: requests decoded together on the many-answers scheduler, on fake
engines whose batched decodes are slowed down so that requests overlap. Real uvicorn servers on
loopback; raw streams through httpx, answers through the openai client."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from serve_helpers import API_KEY, running

from blendin_local.commands.serve import choose_parallel
from blendin_local.errors import UsageError
from blendin_local.methods import METHODS
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.serve.app import ServeConfig, create_app
from blendin_local.serve.worker import DecodeWorker, Event
from blendin_local.settings import GenerationSettings

from fakes import FakeEngine, FakeGroup, FakeSequence, cross_pair

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FRESH = GenerationSettings(max_tokens=16)  # fresh caches: an answer depends on its request alone
ROOT = Path(__file__).resolve().parents[2]
CLI = [str(ROOT / ".venv" / "bin" / "blendin-local")]
CRASH = "~~~~"  # a context holding these tokens makes the fake base's step source raise
LONG = (1, 4, 6, 8)  # body(i)'s greedy answer on the fake pair runs over 100 tokens (no EOS)


def slow_pair(parallel: int, delay: float = 0.01) -> tuple[ModelPair, list[FakeGroup]]:
    """A fake pair whose sequence groups (made here, kept for the worker's same-size call) take
    ``delay`` seconds per batched decode."""
    pair = cross_pair()
    groups = []
    for engine in (pair.base, pair.guide):
        assert isinstance(engine, FakeEngine)
        group = engine.sequences(parallel)[0].group
        plain = group.eval_many

        def slowed(requests: Sequence[tuple[FakeEngine, Sequence[int]]],
                   plain: Callable[..., None] = plain) -> None:
            time.sleep(delay)
            plain(requests)

        group.eval_many = slowed  # type: ignore[method-assign]
        groups.append(group)
    return pair, groups


def config(parallel: int, **kw: Any) -> ServeConfig:
    return ServeConfig(defaults=FRESH, api_key=API_KEY, parallel=parallel, **kw)


def body(i: int, **kw: Any) -> dict[str, Any]:
    """Request i: its own question and its own settings (gamma, sampling)."""
    extra: dict[str, Any] = {"gamma": [0.0, 0.3, 0.6, 1.0][i % 4]}
    if i % 2:
        extra.update(temperature=0.8, seed=100 + i)
    return {"model": "blendin", "messages": [{"role": "user", "content": f"the a b {i} c"}],
            "max_tokens": 24, "stop": ["never-said"], **extra, **kw}


def long_body(k: int, max_tokens: int = 100) -> dict[str, Any]:
    """A request that decodes exactly ``max_tokens`` tokens (up to 100)."""
    return body(LONG[k], max_tokens=max_tokens, gamma=0, temperature=0)


@dataclass
class Stream:
    """One streamed request on its own thread: status, text, and when each event came."""

    url: str
    req: dict[str, Any]
    hang_up_after: int | None = None
    status: int | None = None
    text: str = ""
    chunks: int = 0
    error: dict[str, Any] | None = None
    first_at: float | None = None
    done_at: float | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.stream("POST", self.url + "/v1/chat/completions", headers=AUTH, timeout=60,
                          json={**self.req, "stream": True}) as r:
            self.status = r.status_code
            if r.status_code != 200:
                r.read()
                self.error = r.json()["error"]
                self.done_at = time.monotonic()
                return
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    self.done_at = time.monotonic()
                    return
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    self.error = chunk["error"]
                    continue
                self.first_at = self.first_at or time.monotonic()
                self.chunks += 1
                for choice in chunk["choices"]:
                    self.text += choice["delta"].get("content") or ""
                if self.hang_up_after is not None and self.chunks >= self.hang_up_after:
                    return  # closes the connection mid-stream

    def join(self) -> Stream:
        self.thread.join(60)
        assert not self.thread.is_alive(), "a stream did not end"
        return self


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def alone(requests: list[dict[str, Any]]) -> list[str]:
    """Each request's answer from a --parallel 1 server, one after the other."""
    with running(create_app(cross_pair(), config(1))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        return [client.chat.completions.create(model=r["model"], messages=r["messages"],
                                               extra_body=r).choices[0].message.content or ""
                for r in requests]


@pytest.fixture(scope="module")
def sequential() -> list[str]:
    return alone([body(i) for i in range(8)])


def test_eight_streams_at_parallel_4_equal_the_answers_one_at_a_time(sequential: list[str]) -> None:
    pair, groups = slow_pair(4)
    with running(create_app(pair, config(4))) as url:
        streams = [Stream(url, body(i)) for i in range(8)]
        got = [s.join() for s in streams]
    assert [s.status for s in got] == [200] * 8 and not any(s.error for s in got)
    assert [s.text for s in got] == sequential
    assert all(sequential)
    assert max(groups[0].batch_sizes) == 4  # four answers shared base decodes
    assert max(max(g.batch_sizes) for g in groups) <= 4


async def _events_of(worker: DecodeWorker, prompts: list[str],
                     settings: GenerationSettings) -> list[list[Event]]:
    """Submit the prompts together; every job's events in the order its loop got them."""
    jobs = [worker.submit(Conversation.single(p), settings) for p in prompts]
    out: list[list[Event]] = []
    for job in jobs:
        events = [await asyncio.wait_for(job.events.get(), 20)]
        while events[-1].kind not in ("done", "error"):
            events.append(await asyncio.wait_for(job.events.get(), 20))
        out.append(events)
    return out


def test_batched_steps_reach_the_loop_in_one_hand_off_per_decode() -> None:
    """The worker wakes the request loop once per batched decode, not once per token (each wake-up
    takes the GIL from the decoding thread), and each job still gets start, its steps, done."""
    pair, groups = slow_pair(4)
    worker = DecodeWorker(pair, queue_size=8, parallel=4)
    hand_offs = 0

    async def run() -> list[list[Event]]:
        nonlocal hand_offs
        loop = asyncio.get_running_loop()
        plain = loop.call_soon_threadsafe

        def counted(*args: Any, **kw: Any) -> Any:
            nonlocal hand_offs
            hand_offs += 1
            return plain(*args, **kw)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        return await _events_of(worker, [f"the a b {i} c" for i in LONG], FRESH)

    try:
        events = asyncio.run(run())
    finally:
        worker.close()
    for job_events in events:
        kinds = [e.kind for e in job_events]
        assert kinds == ["start"] + ["step"] * (len(kinds) - 2) + ["done"]
        assert [e.payload.index for e in job_events[1:-1]] == list(range(len(kinds) - 2))
    steps = sum(len(e) - 2 for e in events)
    decodes = sum(g.decodes for g in groups)
    assert steps == 4 * FRESH.max_tokens
    assert hand_offs <= decodes + 1 < steps  # +1: the last events, after the last decode


def test_a_request_arriving_while_others_run_starts_before_they_finish() -> None:
    pair, groups = slow_pair(4, delay=0.02)
    with running(create_app(pair, config(4))) as url:
        long = [Stream(url, long_body(k)) for k in range(3)]
        wait_until(lambda: all(s.chunks >= 3 for s in long))
        late = Stream(url, body(5, max_tokens=4)).join()
        still_running = [s.done_at is None for s in long]
        for s in long:
            s.join()
    assert late.status == 200 and late.text == alone([body(5, max_tokens=4)])[0]
    assert still_running == [True] * 3, "the late request waited for the running ones"
    assert late.done_at is not None and all(late.done_at < (s.done_at or 0) for s in long)
    assert [s.chunks for s in long] == [101] * 3  # 100 tokens and the finish chunk


def test_a_disconnect_frees_its_slot_for_a_waiting_request() -> None:
    pair, _ = slow_pair(2, delay=0.02)
    with running(create_app(pair, config(2))) as url:
        leaving = Stream(url, long_body(0), hang_up_after=3)
        staying = Stream(url, long_body(1))
        wait_until(lambda: staying.chunks >= 3)
        waiting = Stream(url, body(2, max_tokens=4))
        leaving.join()
        waiting.join()
        staying_done = staying.done_at
        staying.join()
    assert waiting.status == 200 and waiting.text == alone([body(2, max_tokens=4)])[0]
    assert staying_done is None, "the waiting request only ran once the other one ended"
    assert staying.chunks == 101


@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's logits read (in the step source, after the decode) raises for a context that
    holds the CRASH character's token: one answer's own failure."""
    plain = FakeSequence.logits

    def logits(self: FakeSequence) -> np.ndarray:
        crash = self.tokenize(CRASH.encode())
        tokens = self._tokens
        if self.name == "fake-base" and any(tokens[i:i + len(crash)] == crash
                                            for i in range(len(tokens))):
            raise RuntimeError("secret internals")
        return plain(self)

    monkeypatch.setattr(FakeSequence, "logits", logits)


@pytest.mark.usefixtures("crashing")
def test_one_failing_request_does_not_affect_the_others(sequential: list[str]) -> None:
    pair, groups = slow_pair(4)
    too_long = body(6, messages=[{"role": "user", "content": "a b " * 300}])  # over n_ctx 512
    crash = body(7, messages=[{"role": "user", "content": f"the {CRASH} a"}])
    with running(create_app(pair, config(4))) as url:
        streams = [Stream(url, body(i)) for i in range(3)]
        wait_until(lambda: all(s.chunks >= 1 for s in streams))
        bad = [Stream(url, too_long), Stream(url, crash)]
        streams += [Stream(url, body(i)) for i in range(3, 6)]
        for s in [*streams, *bad]:
            s.join()
        after = Stream(url, body(0)).join()  # the slots are free and clean again
    assert [s.text for s in streams] == sequential[:6]
    assert bad[0].status == 400 and bad[0].error and bad[0].error["code"] == "context_length_exceeded"
    assert bad[1].status == 500 and bad[1].error and bad[1].error["code"] == "internal_error"
    assert "secret" not in json.dumps(bad[1].error)
    assert after.text == sequential[0]
    assert max(groups[0].batch_sizes) > 1


def test_every_method_batches_and_the_start_up_line_says_so(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    pair, _ = slow_pair(4)
    with running(create_app(pair, config(4))):
        pass
    start = [r.message for r in caplog.records if r.message.startswith("parallel:")]
    assert start == ["parallel: up to 4 requests decode together, each from an empty KV cache; "
                     "every method batches"]


def test_a_method_that_cannot_batch_runs_alone_between_batches(
    sequential: list[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every method batches today; one that evaluates by itself (nudging made so here) waits for
    the running requests to end and runs alone, and the start-up line names it."""
    monkeypatch.setitem(METHODS, "nudging", replace(METHODS["nudging"], driven=frozenset()))
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    pair, groups = slow_pair(4)
    nudging = body(3, model="nudging", max_tokens=6)
    with running(create_app(pair, config(4))) as url:
        streams = [Stream(url, body(i)) for i in range(2)]
        odd = Stream(url, nudging)
        streams += [Stream(url, body(i)) for i in range(2, 4)]
        for s in [*streams, odd]:
            s.join()
    assert [s.text for s in streams] == sequential[:4]
    assert odd.status == 200 and odd.text == alone([nudging])[0]
    start = [r.message for r in caplog.records if r.message.startswith("parallel:")]
    assert start == ["parallel: up to 4 requests decode together, each from an empty KV cache; one "
                     "at a time, once the others end: nudging (and any request whose method or "
                     "support cannot batch)"]


def test_a_followup_turn_takes_the_slot_holding_its_history() -> None:
    """With KV reuse, each chat's second turn runs on the slot its first turn left its KV in,
    whichever slots the other chats took meanwhile, and answers as a lone --parallel 1 server."""
    pair, _ = slow_pair(4)
    reuse = ServeConfig(defaults=GenerationSettings(max_tokens=6, reuse_cache=True),
                        api_key=API_KEY, parallel=4)
    chats = [[{"role": "user", "content": f"the a b {i} c"}] for i in range(3)]
    with running(create_app(pair, reuse)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)

        def ask(messages: list[dict[str, str]]) -> Any:
            return client.chat.completions.create(model="blendin", messages=messages)

        first = [ask(m) for m in chats]
        turn2 = [[*m, {"role": "assistant", "content": r.choices[0].message.content},
                  {"role": "user", "content": "b c"}] for m, r in zip(chats, first, strict=True)]
        second = [ask(m) for m in reversed(turn2)][::-1]  # the last chat's slot is asked first
    for r1, r2 in zip(first, second, strict=True):
        cached = r2.usage.prompt_tokens_details.cached_tokens
        assert r1.usage.prompt_tokens - 2 <= cached < r2.usage.prompt_tokens
    assert [r.choices[0].message.content for r in second] == alone(
        [{"model": "blendin", "messages": m, "max_tokens": 6} for m in turn2])


class Limited(FakeEngine):
    def max_sequences(self) -> int:
        return 3


def test_parallel_is_the_default_or_what_fits() -> None:
    pair = cross_pair()
    assert choose_parallel(pair, None) == 4 and choose_parallel(pair, 16) == 16
    pair.base.__class__ = Limited  # its KV caches of 3 sequences fill the memory share
    assert choose_parallel(pair, None) == 3 and choose_parallel(pair, 3) == 3
    with pytest.raises(UsageError, match=r"--parallel 8: .*at most 3 fit"):
        choose_parallel(pair, 8)


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_parallel_values_are_one_line_errors(bad: str) -> None:
    proc = subprocess.run([*CLI, "serve", "--parallel", bad], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr == f"error: --parallel must be an integer >= 1, got {bad!r}\n"


@pytest.fixture
def parallel_server() -> Iterator[str]:
    pair, _ = slow_pair(4)
    with running(create_app(pair, config(4, queue_size=1, queue_timeout_s=0.5))) as url:
        yield url


def test_the_queue_limits_still_apply_at_parallel_4(parallel_server: str) -> None:
    url = parallel_server
    busy = []
    for k in range(4):  # one by one: the queue holds one request until a slot takes it
        busy.append(Stream(url, long_body(k)))
        wait_until(lambda: busy[-1].chunks >= 1)
    waits = Stream(url, body(4, max_tokens=2))  # the one queue place
    time.sleep(0.2)  # it reaches the queue
    full = httpx.post(url + "/v1/chat/completions", json=body(5), headers=AUTH, timeout=30)
    waits.join()
    for s in busy:
        s.join()
    assert full.status_code == 429 and full.headers["Retry-After"] == "5"
    assert waits.status == 503 and waits.error and waits.error["code"] == "queue_timeout"
    assert all(s.status == 200 and s.chunks == 101 for s in busy)
