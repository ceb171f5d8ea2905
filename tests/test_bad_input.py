"""The bad-input battery (issue 9), through the real console script: each case is one line on
stderr, a non-zero exit, no traceback, and nothing of the user's lost. The tiny GGUF stands in for
the real models, so the whole battery runs in seconds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_run import SCRIPT, assert_ends_with_error, assert_one_line_error, run_cli

BAD = b"\xff\xfe hello"


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> list[str]:
    """Options that run the method ``base`` on the tiny model."""
    return ["--base", str(tiny_gguf), "--method", "base", "--max-tokens", "4"]


def no_temp_files(directory: Path, *keep: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


# --- 1, 5: invalid UTF-8 wherever text comes in ------------------------------------------------------
@pytest.mark.parametrize("args, stdin, where, offset", [
    (["generate", "-"], BAD, "the prompt (stdin)", 0),
    (["generate", BAD], b"", "PROMPT", 0),
    (["generate", "--system", b"ok \xc3", "hi"], b"", "--system", 3),
    (["generate", "--stop", b"\xe2\x82", "hi"], b"", "--stop", 0),
    (["replay", "--continuation", b"fine \xff", "hi"], b"", "--continuation", 5),
    (["replay", BAD, "--continuation", "x"], b"", "PROMPT", 0),
    (["eval", "--data", "x.jsonl", "--task", "gsm8k", "--out", "o", "--system", BAD], b"",
     "--system", 0),
    (["chat", "--system", BAD], b"", "--system", 0),
])
def test_invalid_utf8_text_is_refused_where_it_enters(args, stdin, where, offset, tiny, tmp_path):
    proc = run_cli(*args, *tiny[:2], stdin=stdin, cwd=tmp_path)
    assert_one_line_error(proc, f"{where} is not valid UTF-8", f"offset {offset}")


@pytest.mark.parametrize("option", ["--jsonl", "--from-trace"])
def test_non_utf8_replay_file(option, tmp_path):
    path = tmp_path / "in.jsonl"
    data = b'{"prompt": "ok", "continuation": "ok"}\n{"token": 1, "x": "\xff"}\n'
    path.write_bytes(data)
    args = ["replay", option, str(path)] + ([] if option == "--jsonl" else ["hi"])
    offset = data.index(b"\xff")
    assert_one_line_error(run_cli(*args), "is not valid UTF-8", f"offset {offset}", path=path)


# --- 2: seeds ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["generate", "hi"],
    ["replay", "--continuation", "x", "hi"],
    ["eval", "--data", "x.jsonl", "--task", "gsm8k", "--out", "o"],
    ["chat"],
])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
def test_bad_seed_in_every_command(command, seed, tmp_path):
    proc = run_cli(*command, "--seed", seed, cwd=tmp_path)
    assert_one_line_error(proc, "--seed must be an integer from 0 to 4294967295", repr(seed))


def test_largest_seed_runs(tiny):
    proc = run_cli("generate", *tiny, "--temperature", "1", "--seed", "4294967295", "hi")
    assert proc.returncode == 0, proc.stderr


# --- issue 16, item 6: the decoding values, checked by the table the library and serve use ------------
@pytest.mark.parametrize("option, value, message", [
    ("--max-tokens", "abc", "--max-tokens must be an integer >= 1, got 'abc'"),
    ("--max-tokens", "0", "--max-tokens must be an integer >= 1, got '0'"),
    ("--max-tokens", "4.0", "--max-tokens must be an integer >= 1, got '4.0'"),
    ("--gamma", "nan", "--gamma must be a number >= 0 (> 1: always intervene), got 'nan'"),
    ("--gamma", "-1", "--gamma must be a number >= 0 (> 1: always intervene), got '-1'"),
    ("--temperature", "hot", "--temperature must be a number >= 0 (0 = greedy), got 'hot'"),
    ("--top-k", "1.5", "--top-k must be an integer >= 0 (0 = off), got '1.5'"),
    ("--top-p", "0", "--top-p must be a number in (0, 1], got '0'"),
    ("--min-p", "1", "--min-p must be a number in [0, 1), got '1'"),
    ("--cap", "0", "--cap must be an intervention rate in (0, 1], got '0'"),
])
@pytest.mark.parametrize("command", [["generate", "hi"], ["chat"]])
def test_bad_decoding_values_in_one_line(command, option, value, message, tmp_path):
    proc = run_cli(*command[:1], option, value, *command[1:], cwd=tmp_path)
    assert_one_line_error(proc, message)


@pytest.mark.parametrize("value", ["4", "abc", "8.0"])
def test_bench_max_tokens_is_checked_by_the_limits_table(value, tmp_path):
    proc = run_cli("bench", "--max-tokens", value, cwd=tmp_path)
    assert_one_line_error(proc, "--max-tokens must be an integer >= 8 (a bench times several tokens "
                                f"per answer), got {value!r}")


# --- 6: token ids of a trace --------------------------------------------------------------------------
@pytest.mark.parametrize("token, needle", [
    ("99999999", "token id 99999999 is not in the vocabulary of"),
    ("-5", "got -5"),
    ("1e400", "got Infinity"),
    ("1.5", "got 1.5"),
    ("true", "got true"),
    ('"7"', 'got "7"'),
])
def test_replay_trace_token_ids_are_validated(token, needle, tiny, tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text(f'{{"token": 5}}\n{{"token": {token}}}\n')
    proc = run_cli("replay", *tiny, "--from-trace", str(trace), "hi")
    assert_one_line_error(proc, needle)


def test_replay_trace_from_generate_round_trips(tiny, tmp_path):
    trace = tmp_path / "t.jsonl"
    assert run_cli("generate", *tiny, "--trace", str(trace), "hi").returncode == 0
    proc = run_cli("replay", *tiny, "--from-trace", str(trace), "hi")
    assert proc.returncode == 0, proc.stderr
    assert "4 steps" in proc.stdout


# --- 13: replay --jsonl items ------------------------------------------------------------------------
@pytest.mark.parametrize("content, needle", [
    ('{"prompt": null, "continuation": "x"}\n', "'prompt' must be a non-empty string, got None"),
    ('{"prompt": " ", "continuation": "x"}\n', "'prompt' must be a non-empty string"),
    ('{"prompt": "q", "continuation": 3}\n', "'continuation' must be a non-empty string, got 3"),
    ('[1, 2]\n', "expected a JSON object"),
    ("", "holds no items"),
    ("\n\n", "holds no items"),
])
def test_replay_jsonl_items_are_validated(content, needle, tiny, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(content)
    assert_one_line_error(run_cli("replay", *tiny, "--jsonl", str(path)), needle)


def test_replay_prompt_with_jsonl_is_refused(tiny, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"prompt": "q", "continuation": "x"}\n')
    proc = run_cli("replay", *tiny, "--jsonl", str(path), "a prompt")
    assert_one_line_error(proc, "give no PROMPT with it")


# --- 7: a full disk ---------------------------------------------------------------------------------------
def test_trace_on_a_full_disk_still_gives_the_answer(tiny):
    proc = run_cli("generate", *tiny, "--trace", "/dev/full", "hi")
    assert_ends_with_error(proc, "error: --trace: cannot write /dev/full: No space left on device")
    assert proc.stdout.strip()  # the answer was printed
    assert proc.stderr.startswith("[base] 4 tokens")  # and its summary


def test_replay_out_on_a_full_disk(tiny):
    proc = run_cli("replay", *tiny, "--out", "/dev/full", "--continuation", "abc", "hi")
    assert_one_line_error(proc, "--out: cannot write /dev/full: No space left on device",
                          stdout_empty=False)
    assert "steps: the gate opens" in proc.stdout  # the table was shown


@pytest.mark.parametrize("command", [
    ["generate", "hi"],
    ["generate", "--json", "hi"],
    ["replay", "--continuation", "abc", "hi"],
    ["models", "list"],
])
def test_stdout_on_a_full_disk(command, tiny):
    with open("/dev/full", "wb") as full:
        proc = run_cli(*command[:-1], *(tiny if command[0] != "models" else []), command[-1],
                       stdout=full)
    assert_one_line_error(proc, "cannot write the output: No space left on device")


# --- 9: an existing output file survives a failed run ---------------------------------------------------
@pytest.mark.parametrize("command, option", [
    (["generate"], "--trace"),
    (["replay", "--continuation", "abc"], "--out"),
])
@pytest.mark.parametrize("failure", ["missing model", "prompt too long"])
def test_existing_output_untouched_when_the_run_fails(command, option, failure, tiny, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("my precious lines\n")
    args = [*command, *tiny, option, str(out)]
    if failure == "missing model":
        args += ["--base", str(tmp_path / "missing.gguf"), "hi"]
    else:
        args += ["--n-ctx", "64", "word " * 300]
    proc = run_cli(*args)
    assert_one_line_error(proc)
    assert out.read_text() == "my precious lines\n"
    no_temp_files(tmp_path, "mine.jsonl")


@pytest.mark.parametrize("command, option", [
    (["generate"], "--trace"),
    (["replay", "--continuation", "abc"], "--out"),
])
def test_output_replaced_when_the_run_succeeds(command, option, tiny, tmp_path):
    out = tmp_path / "mine.jsonl"
    out.write_text("old\n")
    proc = run_cli(*command, *tiny, option, str(out), "hi")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert records and all("token" in r for r in records)
    no_temp_files(tmp_path, "mine.jsonl")


# --- warnings (not errors): the run goes on -----------------------------------------------------------
def warnings_of(proc) -> list[str]:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]


def test_base_and_guide_the_same_file_and_no_guide_template(tiny_gguf, tmp_path):
    link = tmp_path / "same.gguf"
    link.hardlink_to(tiny_gguf)  # another name for the same file is still the same file
    proc = run_cli("generate", "--base", str(tiny_gguf), "--guide", str(link), "--max-tokens",
                   "3", "hi")
    assert warnings_of(proc) == [
        f"warning: base and guide are the same file ({tiny_gguf}): blending a model with itself "
        "changes nothing",
        "warning: the guide same has no chat template: it is prompted with a built-in one "
        "guessed from its control tokens, which may not be its own",
    ]


def test_anti_expert_without_proxy_and_too_many_threads(tiny, tiny_gguf):
    proc = run_cli("generate", *tiny, "--anti-expert", str(tiny_gguf), "--threads", "4096", "hi")
    found = warnings_of(proc)
    assert len(found) == 2, proc.stderr
    assert found[0].startswith("warning: --threads 4096 is more than the ")
    assert found[1] == "warning: --anti-expert is only used by --method proxy: it is ignored"


def test_no_warning_for_ordinary_options(tiny):
    assert warnings_of(run_cli("generate", *tiny, "--threads", "1", "hi")) == []


# --- issue 16: closed standard streams, a bad server URL ---------------------------------------------
def run_with_closed(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``blendin-local ARGS`` started with a stream closed by the shell (``>&-``, ``2>&-``, ``<&-``)."""
    proc = subprocess.run(["sh", "-c", f'exec "$0" "$@" {redirect}', str(SCRIPT), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


@pytest.mark.parametrize("redirect, args, needle", [
    (">&-", ["generate", "hi"], "error: cannot write the output: stdout is closed"),
    (">&-", ["generate", "--json", "hi"], "error: cannot write the output: stdout is closed"),
    (">&-", ["models", "list"], "error: cannot write the output: stdout is closed"),
    ("<&-", ["generate", "-"], "error: cannot read the prompt (stdin): stdin is closed"),
])
def test_a_closed_standard_stream_is_one_line(redirect, args, needle, tiny):
    proc = run_with_closed(redirect, *args[:-1], *(tiny if args[0] == "generate" else []), args[-1])
    assert_one_line_error(proc, needle)


def test_closed_stdout_leaves_the_trace_file_alone(tiny, tmp_path):
    trace = tmp_path / "mine.jsonl"
    trace.write_text("my precious lines\n")
    proc = run_with_closed(">&-", "generate", *tiny, "--trace", str(trace), "hi")
    assert_one_line_error(proc, "stdout is closed")
    assert trace.read_text() == "my precious lines\n"
    no_temp_files(tmp_path, "mine.jsonl")


@pytest.mark.parametrize("redirect", ["2>&-", "2>&- <&-"])
def test_closed_stderr_keeps_llama_logs_out_of_the_answer(redirect, tiny):
    """With descriptor 2 closed, llama.cpp's log lines (printed to a missing sys.stderr) landed on
    stdout, inside the answer."""
    expected = run_cli("generate", *tiny, "hi")
    assert expected.returncode == 0, expected.stderr
    proc = run_with_closed(redirect, "generate", *tiny, "hi")
    assert proc.returncode == 0
    assert proc.stdout == expected.stdout


@pytest.mark.integration
def test_closed_stderr_keeps_gemma_logs_out_of_the_answer():
    args = ("generate", "--method", "base", "--no-chat", "--max-tokens", "8", "1, 2, 3,")
    expected = run_cli(*args)
    assert expected.returncode == 0, expected.stderr
    proc = run_with_closed("2>&-", *args)
    assert proc.returncode == 0
    assert proc.stdout == expected.stdout  # not "llama_kv_cache_iswa: using full-size SWA cache"


@pytest.mark.parametrize("url, needle", [
    ("http://127.0.0.1:notaport/v1#base", "is not a valid URL"),
    ("http://127.0.0.1:99999/v1#base", "is not a valid URL"),
    ("http://[::1/v1#base", "is not a valid URL"),
])
def test_a_malformed_server_url_is_one_line(url, needle):
    assert_one_line_error(run_cli("generate", "--base", url, "hi"), f"--base: {url!r}", needle)
