"""The real ``blendin-local`` console script in a subprocess: user errors are one line on stderr and a
non-zero exit (never a traceback); a generation prints text, is reproducible with a seed, and
Ctrl-C keeps what was printed and exits 130."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_run import SCRIPT, assert_one_line_error, interruptible_cli, run_cli


def long_prompt(n_words: int) -> str:
    return "Tell me everything about this word: " + "word " * n_words  # ~1 token per word


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_gguf) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    not_gguf = d / "notes.gguf"
    not_gguf.write_text("these are my notes, not a model\n")
    truncated = d / "cut.gguf"
    data = tiny_gguf.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"missing": d / "missing.gguf", "not-gguf": not_gguf, "truncated": truncated}


def test_script_exists():
    assert SCRIPT.exists(), f"{SCRIPT}: install the package (make install)"


# --- bad model files and names (fail before any real model is loaded) ----------------------------
def test_missing_model_file(bad_files):
    path = bad_files["missing"]
    assert_one_line_error(run_cli("generate", "--base", str(path), "hi"),
                          "model file not found", path=path)


def test_non_gguf_model_file(bad_files):
    path = bad_files["not-gguf"]
    assert_one_line_error(run_cli("generate", "--base", str(path), "hi"),
                          "not a GGUF file", path=path)


def test_truncated_model_file(bad_files):
    path = bad_files["truncated"]
    assert_one_line_error(run_cli("generate", "--base", str(path), "hi"), "truncated", path=path)


@pytest.mark.integration
def test_truncated_real_model_file(gemma_head):
    path = gemma_head
    assert_one_line_error(run_cli("generate", "--base", str(path), "hi"), "truncated", path=path)


def test_unknown_model_name():
    assert_one_line_error(run_cli("generate", "--base", "no-such-model", "hi"),
                          "unknown model 'no-such-model'")


def test_models_info_on_a_bad_file(bad_files):
    path = bad_files["not-gguf"]
    assert_one_line_error(run_cli("models", "info", str(path)), "not a GGUF file", path=path)


# --- prompt ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt(prompt):
    assert_one_line_error(run_cli("generate", prompt), "prompt is empty")


def test_empty_prompt_from_stdin():
    assert_one_line_error(run_cli("generate", "-", stdin=""), "prompt is empty")


@pytest.mark.integration
@pytest.mark.parametrize("n_ctx, n_words", [("64", 150), ("256", 400), ("300", 400)])
def test_prompt_longer_than_the_context(n_ctx, n_words):
    # llama.cpp pads the context to a multiple of 256 while llama-cpp-python keeps n_ctx slots
    # for the tokens: a 150-token prompt with --n-ctx 64 must be refused all the same.
    proc = run_cli("generate", "--n-ctx", n_ctx, long_prompt(n_words))
    assert_one_line_error(proc, "context", "--n-ctx")


# --- option values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--min-p", "1"], "--min-p"),
    (["--gamma", "-1"], "--gamma"),
    (["--alpha", "2"], "--alpha"),
    (["--alpha", "nope"], "--alpha"),
    (["--method", "proxy"], "--anti-expert"),
    (["--trace", "/nonexistent/dir/x.jsonl"], "/nonexistent/dir/x.jsonl"),
])
def test_invalid_option_values(args, needle):
    proc = run_cli("generate", *args, "What is the capital of France?")
    assert_one_line_error(proc, needle)


# --- working generations ------------------------------------------------------------------------------
BASE_ARGS = ("generate", "--method", "base", "--max-tokens", "8", "--no-chat")


@pytest.mark.integration
def test_generate_prints_text_and_a_summary():
    proc = run_cli(*BASE_ARGS, "The capital of France is")
    report = f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip(), report
    summary = proc.stderr.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("[base] "), report
    assert "stop: " in summary[0]

    from_stdin = run_cli(*BASE_ARGS, "-", stdin="The capital of France is")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == proc.stdout


@pytest.mark.integration
def test_same_seed_prints_the_same_text():
    args = ("generate", "--seed", "1", "--temperature", "0.8", "--max-tokens", "24",
            "What is the capital of France?")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip()
    assert first.stdout == second.stdout


@pytest.mark.integration
def test_generation_reaching_the_context_end_stops_cleanly():
    """A prompt that fits, then the answer fills the context: stop reason context-full."""
    proc = run_cli("generate", "--method", "base", "--no-chat", "--n-ctx", "64",
                   "--max-tokens", "500", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,")
    report = f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, report
    assert proc.returncode == 0, report
    assert "stop: context-full" in proc.stderr, report


@pytest.mark.integration
def test_ctrl_c_keeps_the_text_and_exits_130():
    with interruptible_cli("generate", "--method", "base", "--no-chat", "--max-tokens", "3000",
                           "1, 2, 3, 4, 5, 6,") as proc:
        first = b""
        while len(first.strip()) < 4:  # wait for a few visible characters
            chunk = proc.stdout.read1(64)  # type: ignore[union-attr]  # blocks until the next token
            assert chunk, proc.communicate(timeout=60)[1].decode()
            first += chunk
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    out, err_text = (first + rest).decode(), err.decode()
    report = f"rc={proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err_text}"
    assert proc.returncode == 130, report
    assert "Traceback" not in err_text, report
    assert out.startswith(first.decode()) and out.strip(), report
    assert "stop: interrupted" in err_text, report


def wait_for_mapping_change(proc: subprocess.Popen[bytes], name: str, changes: int,
                            timeout: float = 120) -> None:
    """Block until whether the child has a file called ``name`` mmapped has changed ``changes``
    times. A model file is mapped twice: by the GGUF check (1: mapped, 2: unmapped, and llama.cpp
    starts reading the header) and by llama.cpp for its tensors (3)."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    mapped, seen = False, 0
    while seen < changes:
        assert time.monotonic() < deadline, f"{name}: {seen} of {changes} mapping changes seen"
        assert proc.poll() is None, proc.communicate()[1].decode()
        with contextlib.suppress(OSError):
            if (name in maps.read_text()) != mapped:
                mapped, seen = not mapped, seen + 1
        time.sleep(0.0005)


GEMMA, SMOLLM = "gemma-3-270m-q4_k_m.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/PID/maps")
@pytest.mark.parametrize("model, changes, delay", [  # short delays: still loading on a fast machine
    (GEMMA, 2, 0.0), (GEMMA, 2, 0.2), (GEMMA, 3, 0.0), (GEMMA, 3, 0.1), (SMOLLM, 2, 0.0),
    (SMOLLM, 3, 0.0),
])
def test_ctrl_c_while_loading_stops_the_run(model, changes, delay, tmp_path):
    """Issue 16, item 3: a Ctrl-C while llama.cpp loads a model was raised inside llama-cpp-python's
    log callback (a ctypes callback) and dropped there: the full answer ran and the exit was 0."""
    trace = tmp_path / "mine.jsonl"
    trace.write_text("my precious lines\n")
    with interruptible_cli("generate", "--max-tokens", "64", "--trace", str(trace),
                           "1, 2, 3, 4,") as proc:
        wait_for_mapping_change(proc, model, changes)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    report = f"rc={proc.returncode}\n--- stdout\n{out.decode()}\n--- stderr\n{err.decode()}"
    assert proc.returncode == 130, report
    assert "Traceback" not in err.decode() and "interrupted" in err.decode(), report
    assert out == b"", report  # stopped before any answer
    assert trace.read_text() == "my precious lines\n"  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.jsonl"]
