"""Load: 8 concurrent clients × 5 streamed requests on the real default pair, two of them
disconnecting mid-stream. Bounded: small max_tokens, client timeouts, thread joins."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import openai
import pytest
from serve_helpers import API_KEY, running

from blendin_local.pair import ModelPair
from blendin_local.serve.app import ServeConfig, create_app
from blendin_local.settings import GenerationSettings

pytestmark = pytest.mark.integration
CLIENTS, REQUESTS, MAX_TOKENS = 8, 5, 6
LETTERS = "ABCDEFGH"
LONG = "The history of the Roman Empire begins"  # the base rambles on: long enough to interrupt


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ask(letter: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Name an animal whose name starts with {letter}."}]


def test_concurrent_streams_never_interleave_and_disconnects_do_not_stall(
    real_pair: ModelPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blendin_local.serve")
    # Fresh caches: every answer depends on its prompt alone, whatever ran before it.
    config = ServeConfig(defaults=GenerationSettings(max_tokens=MAX_TOKENS), api_key=API_KEY,
                         queue_size=CLIENTS)
    with running(create_app(real_pair, config)) as url:
        def new_client() -> openai.OpenAI:
            return openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)

        first = new_client()
        expected = {c: first.chat.completions.create(model="blendin", messages=ask(c))
                    .choices[0].message.content for c in LETTERS}
        rss_before = rss_bytes()
        errors: list[str] = []
        got: dict[tuple[int, int], str] = {}

        def client_run(i: int) -> None:
            client = new_client()
            try:
                for j in range(REQUESTS):
                    if i < 2 and j == 2:  # two clients hang up mid-stream
                        stream = client.completions.create(model="base", prompt=LONG,
                                                           max_tokens=400, stream=True)
                        for n, _ in enumerate(stream):
                            if n == 2:
                                break
                        stream.close()
                        continue
                    stream = client.chat.completions.create(model="blendin", messages=ask(LETTERS[i]),
                                                            stream=True)
                    chunks = list(stream)
                    ids = {c.id for c in chunks}
                    steps = [c.model_extra["blendin"]["step"]["index"] for c in chunks
                             if "step" in (c.model_extra or {}).get("blendin", {})]
                    if len(ids) != 1 or steps != list(range(len(steps))):
                        errors.append(f"client {i} request {j}: mixed chunks {ids} {steps}")
                    got[i, j] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"client {i}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client_run, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not any(t.is_alive() for t in threads), "clients stalled"
        assert not errors, errors
        assert len(got) == CLIENTS * REQUESTS - 2
        for (i, _), text in got.items():
            assert text == expected[LETTERS[i]], (i, text)
        rss_after = rss_bytes()
    assert abs(rss_after - rss_before) <= 0.10 * rss_before, (rss_before, rss_after)
    lines = [r.getMessage() for r in caplog.records if r.name == "blendin_local.serve"]
    hung_up = [line for line in lines if "model=base" in line]
    assert len(hung_up) == 2
    for line in hung_up:  # stopped at the next token, far from its 400
        assert " 499 " in line and "stop=cancelled" in line
        assert int(re.search(r"completion=(\d+)", line)[1]) < 100  # type: ignore[index]
