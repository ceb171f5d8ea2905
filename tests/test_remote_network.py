"""A remote base behind a network (``blendin_local.engines.remote.netem``'s delay proxy in front of
llama-server): greedy text is the same at any round trip time, chunked and per token; a connection
dropped or stalled mid-chunk keeps the text already printed, fails in one line, and is never read as the
base ending its answer; a connection dropped before the answer starts is retried."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli

from blendin_local.engines.remote.netem import delay_proxy, through

PROMPT = "Why is the sky blue?"


def generate(url: str, *args: str) -> tuple[int, str, str]:
    proc = run_cli("generate", "--base", f"{url}#gemma3-270m", "--method", "base", "--max-tokens", "40",
                   *args, PROMPT, timeout=300)
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def full_answer(native_gemma_server: str) -> str:
    """The undisturbed answer (the server has seen the prompt first: see test_native_server)."""
    generate(native_gemma_server)
    code, out, err = generate(native_gemma_server)
    assert code == 0 and out.strip(), err
    return out


@pytest.mark.integration
def test_the_same_text_at_every_round_trip_time(native_gemma_server, full_answer):
    for rtt in (5, 40):
        with delay_proxy(native_gemma_server, rtt) as proxy:
            for chunk in ("16", "1"):
                code, out, err = generate(through(native_gemma_server, proxy), "--remote-chunk", chunk)
                assert (rtt, chunk, code, out) == (rtt, chunk, 0, full_answer), err


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "needle"), [
    ("drop", "dropped mid-stream after"),
    ("stall", "stopped answering mid-stream after"),
])
def test_a_connection_broken_mid_chunk_keeps_the_text_and_fails_in_one_line(
        native_gemma_server, full_answer, kind, needle):
    with delay_proxy(native_gemma_server, 0) as proxy:
        proxy.fail(kind, after_bytes=2500)  # past the /models check, a few tokens into the answer
        code, out, err = generate(through(native_gemma_server, proxy), "--timeout", "3")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and needle in lines[0], err
    # what was printed is the answer's start, and not all of it: the broken chunk is not an end
    assert full_answer.startswith(out.rstrip("\n")) and len(out.strip()) < len(full_answer.strip())


@pytest.mark.integration
def test_a_connection_dropped_before_the_answer_is_retried(native_gemma_server, full_answer):
    with delay_proxy(native_gemma_server, 0) as proxy:
        proxy.fail("drop", after_bytes=0, times=1)
        proc = run_cli("generate", "--base", f"{through(native_gemma_server, proxy)}#gemma3-270m",
                       "--method", "base", "--max-tokens", "40", "--json", PROMPT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == full_answer.rstrip("\n")
