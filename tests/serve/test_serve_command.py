"""The ``serve`` command: safe binding, lazy imports, and a real server started from the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from blendin_local.commands.serve import check_bind, is_loopback
from blendin_local.errors import UsageError

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "blendin_local.cli"]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.com"))


def test_binding_beyond_loopback_needs_a_key() -> None:
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "secret")
    for host in ("0.0.0.0", "192.168.1.4", "myhost"):
        with pytest.raises(UsageError, match="--api-key"):
            check_bind(host, None)
    with pytest.raises(UsageError, match="empty"):
        check_bind("0.0.0.0", " ")


def test_the_cli_refuses_an_open_bind_in_one_line_before_loading_models() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BLENDIN_API_KEY"}
    proc = subprocess.run([*CLI, "serve", "--host", "0.0.0.0"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --host 0.0.0.0") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_the_cli_lists_serve_without_importing_the_web_stack() -> None:
    code = ("import sys; from click.testing import CliRunner; from blendin_local.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert 'serve' in r.output, r.output; "
            "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_serve_from_the_command_line_with_a_key_from_the_environment(
    default_models: dict[str, Path],
) -> None:
    port = free_port()
    env = {**os.environ, "BLENDIN_API_KEY": "k-123"}
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--max-tokens", "8", "--n-ctx", "1024"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                r = httpx.get(url + "/v1/models", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert r.status_code == 401
        client = openai.OpenAI(base_url=url + "/v1", api_key="k-123", max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model="blendin", messages=[{"role": "user", "content": "What is 2 + 2?"}])
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "API key required" in err
    assert '"POST /v1/chat/completions" 200 model=blendin stream=no' in err
    assert '"GET /v1/models" 401' in err  # refused requests get their line too
    assert "interventions=" in err and "tok/s=" in err
