"""``bench`` with the base on a server (``blendin_local.bench.remote``): the chunked loops (stream kept
open through unsure positions, or closed there) and the per-token loop side by side in one run, each
request bound checked per answer; faults are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.servers import free_port

SCRIPT = Path(sys.executable).with_name("blendin-local")


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_bench_remote_native_runs_both_loops_at_each_rtt_and_checks_the_bounds(llama_server_binary):
    """--remote-native starts llama-server with the default base for the run; the report holds the
    three loops per round trip time and per variant (speed targets are read by people, not asserted
    here), with the server's own count of the tokens it generated."""
    pin = len(os.sched_getaffinity(0)) >= 2
    proc = run("bench", "--remote-native", "base", "--llama-server", str(llama_server_binary),
               "--max-tokens", "16", "--rounds", "1", "--questions", "3", "--rtt", "0,20",
               *(["--pin-server"] if pin else []),
               "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["servers"]["base"].startswith("gemma3-270m@http://127.0.0.1:")
    variants = report["variants"]
    assert [v["rtt_ms"] for v in variants] == [0, 20] * (2 if pin else 1)
    assert [v["waits_for_server"] for v in variants] == [True, True] + ([False, False] if pin else [])
    if pin:
        assert variants[2]["variant"].startswith("server on core(s) ")
    texts = set()
    for v in variants:
        runs = v["runs"]
        assert list(runs) == ["chunked (K≤16), kept open", "chunked (K≤16), closes", "per-token (K=1)"]
        chunked, closing, per_token = runs.values()
        assert chunked["tokens"] == closing["tokens"] == per_token["tokens"] > 0
        assert chunked["interventions"] == closing["interventions"] == per_token["interventions"]
        # streams kept open only in the first loop; the blend's choice is the same in all three
        assert chunked["kept_open"] <= chunked["decided_open"] <= chunked["interventions"]
        assert closing["decided_open"] == per_token["decided_open"] == 0
        assert chunked["base_token_kept"] == closing["base_token_kept"] == per_token["base_token_kept"]
        assert closing["base_requests"] <= closing["base_request_bound"]
        # the per-token loop asks once per token (once more where the server ended the text early)
        assert per_token["tokens"] <= per_token["base_requests"] <= per_token["tokens"] + report["questions"]
        assert chunked["base_requests"] <= chunked["base_request_bound"]
        assert chunked["answers_over_base_bound"] == 0
        # as many as the per-token loop at most: the costs may call for 1-token requests
        assert chunked["base_requests"] <= per_token["base_requests"]
        assert 1 <= chunked["largest_chunk"] <= 16 and per_token["largest_chunk"] == 1
        assert chunked["guide_requests"] is None and chunked["bytes_received"] > 0
        # llama-server's --metrics: every kept position was generated once at least
        for run_ in (chunked, per_token):
            assert run_["server_generated"] >= run_["tokens"]
        assert per_token["server_generated"] <= per_token["base_requests"]  # one token per request
        assert chunked["guide_ms_per_intervention"] > 0
        rows = {row["metric"]: row for row in v["targets"]}
        assert rows["greedy text chunked == per-token"]["ok"] is True
        assert rows["greedy text closing == per-token"]["ok"] is True
        assert rows["base requests <= interventions + ceil(tokens/K) + 1"]["ok"] is True
        assert rows["guide requests <= interventions"]["ok"] is None  # a local guide
        for metric in ("client ms per token (chunked)", "chunked / per-token tok/s",
                       "server tokens generated / kept (chunked)"):
            assert isinstance(rows[metric]["ok"], bool)
        texts.add(chunked["tokens"])
    assert len(texts) == 1  # the same answers at every RTT and in every variant


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--base", f"http://127.0.0.1:{free_port()}/v1#m"], 1, "connection refused (is the server running?)"),
    (["--remote-native", "base", "--llama-server", "/nonexistent/llama-server"], 2,
     "llama-server: /nonexistent/llama-server is not an executable file"),
    (["--base", "http://127.0.0.1:9/v1#m", "--chat"], 2, "--chat runs on local models only"),
    (["--base", "http://127.0.0.1:9/v1#m", "--rtt", "0,x"], 2, "is not a comma-separated list"),
    (["--base", "http://127.0.0.1:9/v1#m", "--rtt", "-5"], 2, "a number of milliseconds >= 0"),
    (["--base", "http://127.0.0.1:9/v1#m", "--pin-server"], 2, "--pin-server needs --remote-native"),
])
def test_bench_remote_faults_are_one_line(args, code, needle):
    proc = run("bench", *args)
    assert proc.returncode == code and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_a_server_sharing_the_cores_gets_the_threads_the_client_leaves(monkeypatch):
    """llama.cpp's pools spin at barriers: client + server threads never exceed the cores."""
    from blendin_local.bench.remote import shared_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    assert shared_threads(None) == (2, 2)
    assert shared_threads(1) == (1, 3)
    assert shared_threads(4) == (4, 1)  # the client took every core: the server still needs one
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    assert shared_threads(None) == (1, 1)
