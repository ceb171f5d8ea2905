"""llama.cpp's native ``llama-server`` (``make llama-server``) as a remote base: its response shape
(a list of positions with ``top_logprobs`` lists) parses into the same positions, and BlendIn over it
gives the same greedy text chunked and per token. Starting servers fails in one line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec
from blendin_local.engines.remote.native_server import ServerStartError, find_llama_server, serving
from blendin_local.errors import UsageError

from fakes.servers import free_port

SCRIPT = Path(sys.executable).with_name("blendin-local")
PROMPT = "Question: What is the capital of France?\nAnswer:"


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_native_server_sends_the_list_shape_and_it_parses(native_gemma_server):
    body = {"model": "gemma3-270m", "prompt": PROMPT, "max_tokens": 3, "logprobs": 5,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{native_gemma_server}/completions", json=body, timeout=60) as response:
        events = [json.loads(line[5:]) for line in response.iter_lines()
                  if line.startswith("data:") and line[5:].strip() != "[DONE]"]
    shaped = [e["choices"][0]["logprobs"] for e in events if e["choices"][0].get("logprobs")]
    assert shaped and all(set(lp) == {"content"} for lp in shaped)  # not the legacy lists
    first = shaped[0]["content"][0]
    assert {"token", "logprob", "top_logprobs"} <= set(first) and len(first["top_logprobs"]) == 5

    model = RemoteModel(RemoteSpec(native_gemma_server, "gemma3-270m"), timeout=60)
    model.check()  # /v1/models lists the alias
    positions = list(model.stream(PROMPT, max_tokens=4, logprobs=100))
    assert len(positions) == 4
    for p in positions:  # greedy: the chosen token is the top of the distribution sent
        assert len(p.top) > 50 and max(p.top.values()) == pytest.approx(p.logprob)
        assert sum(p.probs().values()) <= 1 + 1e-4
    streamed = [lp["content"][0]["token"] for lp in shaped]
    assert [p.text for p in positions][:3] == streamed
    assert model.traffic.requests == 2 and model.traffic.bytes_received > 0
    model.close()


def summary(*args: str) -> dict:
    proc = run("generate", "--json", *args, "Why is the sky blue?")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.integration
def test_blendin_over_the_native_server_is_the_same_chunked_and_per_token(native_gemma_server):
    """llama-server's logits depend on how a text reached its cache: a prompt seen for the first time
    is evaluated in one batch, later requests re-evaluate only its last token (|Δ top-1 prob| ~0.015
    measured). So both loops run on a prompt the server has seen, as a user's second answer does."""
    common = ["--base", f"{native_gemma_server}#gemma3-270m", "--support", "top100", "--gamma", "0.5",
              "--max-tokens", "40"]
    summary(*common[:-1], "1")  # the server has seen the prompt
    chunked = summary(*common)
    per_token = summary(*common, "--remote-chunk", "1")
    assert chunked["text"] == per_token["text"] and chunked["text"].strip()
    assert chunked["interventions"] == per_token["interventions"] > 0
    base, one_each = chunked["remote"]["base"], per_token["remote"]["base"]
    # one /models check, then at most one request per intervention and per chunk of K (the largest
    # chunk asked, at most 16), plus one
    k = base.get("largest_chunk", 1)
    assert 1 <= k <= 16
    assert base["requests"] <= 1 + chunked["interventions"] + math.ceil(chunked["tokens"] / k) + 1
    assert one_each["requests"] == 1 + per_token["tokens"]


def test_a_server_that_exits_while_starting_is_one_line():
    argv = [sys.executable, "-c", "import sys; print('loading'); print('bad model file'); sys.exit(3)"]
    with pytest.raises(ServerStartError) as exc, serving(argv, f"http://127.0.0.1:{free_port()}/health",
                                                          name="test-server"):
        pass
    assert str(exc.value) == "test-server exited while starting (code 3): bad model file"


def test_missing_llama_server_binary_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("BLENDIN_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="llama-server not found: build it with `make llama-server`"):
        find_llama_server()
    (tmp_path / "llama-server").write_text("")
    with pytest.raises(UsageError, match="is not an executable file"):
        find_llama_server(str(tmp_path / "llama-server"))
