"""BlendIn with a remote base (a real llama-cpp-python server holding the default base) and the local
guide: the same answers as the local base, one base request per confident run, one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.servers import free_port, scripted_server, send_json

SCRIPT = Path(sys.executable).with_name("blendin-local")
PROMPT = "Why is the sky blue?"
CHUNK = 16


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def summary(*args: str) -> dict:
    proc = run("generate", "--json", *args, PROMPT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.integration
@pytest.mark.parametrize("method", ["blendin", "base"])
def test_remote_base_answers_as_the_local_base(gemma_server, method):
    """Chunked requests give the local base's greedy answer, and for blendin also the reference's
    one-request-per-token loop's (--remote-chunk 1), with fewer requests."""
    common = ["--method", method, "--support", "top100", "--max-tokens", "40", "--gamma", "0.5"]
    remote = summary("--base", f"{gemma_server}#gemma3-270m", *common)
    local = summary("--base", "gemma3-270m", *common)
    assert remote["text"] == local["text"] and remote["text"].strip()
    assert remote["interventions"] == local["interventions"]
    traffic = remote["remote"]["base"]
    # one /models check, then one completions request per intervention and per full chunk of K (the
    # largest chunk asked)
    k = traffic.get("largest_chunk", 1)
    assert 1 <= k <= CHUNK
    assert traffic["requests"] <= 1 + remote["interventions"] + math.ceil(remote["tokens"] / k) + 1
    assert traffic["bytes_received"] > 0 and remote["remote"]["client_ms_per_token"] >= 0
    if method == "blendin":
        assert remote["interventions"] > 0  # the protocol path with interventions was exercised
        per_token = summary("--base", f"{gemma_server}#gemma3-270m", "--remote-chunk", "1", *common)
        assert per_token["text"] == remote["text"]
        assert per_token["remote"]["base"]["requests"] == 1 + per_token["tokens"]
        assert traffic["requests"] < per_token["remote"]["base"]["requests"]


@pytest.mark.integration
def test_remote_base_needs_top100_support(gemma_server):
    proc = run("generate", "--base", f"{gemma_server}#gemma3-270m", PROMPT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: method blendin --support full needs full distributions; "
                                   f"the base at {gemma_server} gives top-100 logprobs: use --support top100")


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "proxy", "--anti-expert", "smollm2-135m-instruct"],
     "method proxy needs full distributions from the base; the base at"),
    (["--support", "top100", "--temperature", "0.7"], "a base on a server decodes greedily"),
])
def test_unsupported_remote_settings_are_one_line(args, needle):
    models = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]})}
    with scripted_server(models) as (url, _):
        proc = run("generate", "--base", f"{url}#m", *args, PROMPT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_remote_base_down_or_unnamed_is_one_line():
    down = run("generate", "--base", f"http://127.0.0.1:{free_port()}/v1#m", PROMPT)
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert "connection refused (is the server running?)" in down.stderr
    unnamed = run("generate", "--base", "http://127.0.0.1:9/v1", PROMPT)
    assert unnamed.returncode == 2 and "name the served model" in unnamed.stderr


def test_a_remote_base_dying_mid_answer_keeps_the_text_and_says_why():
    from fakes.servers import completion_chunk

    def dies(h, _body) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        h.wfile.write((completion_chunk([" Because"]) + completion_chunk([" light"])).encode())
        h.close_connection = True

    handlers = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]}),
                "POST /v1/completions": dies}
    with scripted_server(handlers) as (url, _):
        proc = run("generate", "--method", "base", "--base", f"{url}#m", PROMPT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.startswith(" Because light")
    assert proc.stderr.strip().splitlines() == [
        f"error: the connection to {url} dropped mid-stream after 2 tokens: "
        + proc.stderr.split("after 2 tokens: ", 1)[1].strip()]


@pytest.mark.parametrize("args", [
    ["generate", "--method", "proxy", "--anti-expert", "http://127.0.0.1:9/v1#g", PROMPT],
])
def test_commands_that_cannot_use_a_server_model_say_so_before_loading(args):
    base = [] if "--guide" in args or "--anti-expert" in args else ["--base", "http://127.0.0.1:9/v1#m"]
    proc = run(*args, *base)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not supported here yet" in lines[0] or "cannot be the anti-expert" in lines[0]


@pytest.mark.integration
def test_the_guide_method_ignores_a_remote_base(gemma_server):
    guide_alone = summary("--base", f"{gemma_server}#gemma3-270m", "--method", "guide", "--max-tokens", "8")
    local = summary("--method", "guide", "--max-tokens", "8")
    assert guide_alone["text"] == local["text"] and "remote" not in guide_alone


@pytest.mark.parametrize(("finish", "requests", "text"), [
    ("length", 2, " é é"),  # fewer positions than tokens asked, yet the limit: ask again
    ("stop", 1, " é"),  # the model's end: no further request
])
def test_a_short_chunk_ends_the_answer_only_when_the_server_says_stop(finish, requests, text):
    """llama-server streams one position per multi-byte character, so a chunk of 4 tokens asked can
    hold 1 position and still end on ``length``."""
    import json as _json

    from fakes.servers import completion_chunk, send_sse_head

    asked: list[dict] = []

    def completions(h, body) -> None:
        asked.append(body)
        send_sse_head(h)
        h.wfile.write(completion_chunk([" é"]).encode())
        end = {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}]}
        h.wfile.write(f"data: {_json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

    handlers = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]}),
                "POST /v1/completions": completions}
    with scripted_server(handlers) as (url, _):
        proc = run("generate", "--method", "base", "--base", f"{url}#m", "--remote-chunk", "4",
                   "--max-tokens", "2" if finish == "length" else "8", PROMPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(text) and len(asked) == requests
