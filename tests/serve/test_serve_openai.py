"""The real ``openai`` client against a real server holding the real default pair."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from serve_helpers import API_KEY, running

from blendin_local.pair import ModelPair
from blendin_local.serve.app import ServeConfig, create_app
from blendin_local.settings import GenerationSettings

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "blendin_local.cli"]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(real_pair: ModelPair) -> Iterator[openai.OpenAI]:
    """Fresh caches per request, so answers are comparable with ``generate``'s."""
    config = ServeConfig(defaults=GenerationSettings(max_tokens=24), api_key=API_KEY)
    with running(create_app(real_pair, config)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_models_list_names_every_method_of_the_pair(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["blendin", "base", "guide", "nudging", "ensemble"]
    assert client.models.retrieve("nudging").id == "nudging"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_wrong_key_is_refused_by_the_client(client: openai.OpenAI) -> None:
    bad = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_chat_streamed_and_whole_give_the_same_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="blendin", messages=QUESTION, max_tokens=16)
    stream = client.chat.completions.create(model="blendin", messages=QUESTION, max_tokens=16,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = whole.choices[0].message.content
    assert text == answer and "Paris" in answer
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens > 10
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1
    assert finish[0].model_extra["blendin"]["result"]["text"] == answer
    steps = whole.model_extra["blendin"]["steps"]
    assert len(steps) == whole.usage.completion_tokens
    assert whole.model_extra["blendin"]["result"]["interventions"] == sum(s["intervened"] for s in steps)


def test_completion_extension_fields_match_generate_json(client: openai.OpenAI, tmp_path: Path) -> None:
    prompt = "The three primary colours are"
    knobs = {"gamma": 0.5, "alpha": 0.3, "temperature": 0.8, "seed": 7, "max_tokens": 20}
    trace = tmp_path / "trace.jsonl"
    proc = subprocess.run(
        [*CLI, "generate", prompt, "--no-chat", "--json", "--trace", str(trace), "--n-ctx", "1024",
         *[a for k, v in knobs.items() for a in (f"--{k.replace('_', '-')}", str(v))]],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    want = json.loads(proc.stdout)
    records = [json.loads(line) for line in trace.read_text().splitlines()]

    r = client.completions.create(model="blendin", prompt=prompt, max_tokens=20, temperature=0.8,
                                  seed=7, extra_body={"gamma": 0.5, "alpha": 0.3})
    ext = r.model_extra["blendin"]
    assert r.choices[0].text == want["text"] == ext["result"]["text"]
    for key in ("tokens", "prompt_tokens", "interventions", "guide_changed", "by_provenance",
                "stop_reason"):
        assert ext["result"][key] == want[key], key
    assert ext["result"]["settings"] == want["settings"]
    assert r.usage.completion_tokens == want["tokens"]
    assert len(ext["steps"]) == len(records)
    for got, rec in zip(ext["steps"], records, strict=True):
        for key in ("index", "token", "text", "provenance", "intervened"):
            assert got[key] == rec[key]
        for key in ("b", "g", "alpha", "p_base_token", "p_token"):
            assert got[key] == pytest.approx(rec[key], rel=1e-5), key


def test_logprobs_on_the_real_pair(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="blendin", messages=QUESTION, max_tokens=8,
                                       logprobs=True, top_logprobs=4)
    steps = r.model_extra["blendin"]["steps"]
    content = r.choices[0].logprobs.content
    assert len(content) == len(steps) == r.usage.completion_tokens
    for lp, step in zip(content, steps, strict=True):
        assert lp.logprob == pytest.approx(math.log(step["p_token"]))
        assert lp.top_logprobs[0].logprob == pytest.approx(lp.logprob)  # greedy
        assert len(lp.top_logprobs) == 4


def test_blendin_knobs_per_request(client: openai.OpenAI) -> None:
    never = client.chat.completions.create(model="blendin", messages=QUESTION, max_tokens=6,
                                           extra_body={"gamma": 0.0})
    always = client.chat.completions.create(model="ensemble", messages=QUESTION, max_tokens=6)
    assert never.model_extra["blendin"]["result"]["interventions"] == 0
    assert always.model_extra["blendin"]["result"]["interventions"] == always.usage.completion_tokens
    with pytest.raises(openai.UnprocessableEntityError, match="gamma"):
        client.chat.completions.create(model="blendin", messages=QUESTION, extra_body={"gamma": -1})


def test_a_second_turn_reuses_the_cached_history_on_the_real_pair(real_pair: ModelPair) -> None:
    config = ServeConfig(defaults=GenerationSettings(max_tokens=12, reuse_cache=True), api_key=API_KEY)
    with running(create_app(real_pair, config)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        r1 = client.chat.completions.create(model="blendin", messages=QUESTION)
        history = [*QUESTION, {"role": "assistant", "content": r1.choices[0].message.content},
                   {"role": "user", "content": "And of Italy?"}]
        r2 = client.chat.completions.create(model="blendin", messages=history)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert r1.usage.prompt_tokens <= cached < r2.usage.prompt_tokens
    assert r2.model_extra["blendin"]["result"]["cached_tokens"] == cached
    assert r2.choices[0].message.content.strip()
