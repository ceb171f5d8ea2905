"""``bench`` with the base on a server (``blendin_local.remote_bench``): the chunked and per-token loops
side by side in one run, each request bound checked per answer; faults are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servers import free_port

SCRIPT = Path(sys.executable).with_name("blendin-local")


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_bench_remote_native_runs_both_loops_and_checks_the_bounds(llama_server_binary):
    """--remote-native starts llama-server with the default base for the run; the report holds
    both loops (speed targets are read by people, not asserted here)."""
    proc = run("bench", "--remote-native", "base", "--llama-server", str(llama_server_binary),
               "--max-tokens", "24", "--rounds", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    chunked, per_token = report["runs"]["chunked (K=16)"], report["runs"]["per-token (K=1)"]
    assert report["servers"]["base"].startswith("gemma3-270m@http://127.0.0.1:")
    assert chunked["tokens"] == per_token["tokens"] > 0
    assert chunked["interventions"] == per_token["interventions"]
    # the per-token loop asks once per token (once more where the server ended the text early)
    assert per_token["tokens"] <= per_token["base_requests"] <= per_token["tokens"] + report["questions"]
    assert chunked["base_requests"] <= chunked["base_request_bound"]
    assert chunked["answers_over_base_bound"] == 0
    assert chunked["base_requests"] < per_token["base_requests"]
    assert chunked["guide_requests"] is None and chunked["bytes_received"] > 0
    rows = {row["metric"]: row for row in report["targets"]}
    assert rows["greedy text chunked == per-token"]["ok"] is True
    assert rows["base requests <= interventions + ceil(tokens/16) + 1"]["ok"] is True
    assert rows["guide requests <= interventions"]["ok"] is None  # a local guide
    assert isinstance(rows["client ms per token (chunked)"]["ok"], bool)


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--base", f"http://127.0.0.1:{free_port()}/v1#m"], 1, "connection refused (is the server running?)"),
    (["--remote-native", "base", "--llama-server", "/nonexistent/llama-server"], 2,
     "llama-server: /nonexistent/llama-server is not an executable file"),
    (["--base", "http://127.0.0.1:9/v1#m", "--chat"], 2, "--chat runs on local models only"),
])
def test_bench_remote_faults_are_one_line(args, code, needle):
    proc = run("bench", *args)
    assert proc.returncode == code and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
