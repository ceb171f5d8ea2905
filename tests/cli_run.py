"""Run the real ``blendin-local`` console script in a subprocess, and check its one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SCRIPT = Path(sys.executable).with_name("blendin-local")


def default_sigint() -> None:
    """``preexec_fn`` for a child that must get Ctrl-C: a test run started as a background job
    inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def interruptible_cli(*args: str, env: dict[str, str] | None = None
                      ) -> Iterator[subprocess.Popen[bytes]]:
    """The CLI started so that Ctrl-C reaches it (``default_sigint``), stdout and stderr piped; killed
    on the way out if the test leaves it running."""
    proc = subprocess.Popen([str(SCRIPT), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_cli(*args: str | bytes, stdin: str | bytes | None = "", timeout: float = 180,
            stdout: int | IO[bytes] = subprocess.PIPE,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``args`` may be bytes (argv that is not UTF-8); output is decoded with U+FFFD for bad bytes."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([str(SCRIPT), *args], input=data, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return subprocess.CompletedProcess(
        proc.args, proc.returncode,
        (proc.stdout or b"").decode("utf-8", errors="replace"),
        proc.stderr.decode("utf-8", errors="replace"),
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str,
                          path: Path | None = None, stdout_empty: bool = True) -> None:
    """Non-zero exit, no traceback, one ``error: ...`` line on stderr naming ``path`` (when given)
    and containing every needle outside the path itself; nothing on stdout unless allowed."""
    report = f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, report
    assert proc.returncode not in (0, None), report
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, report
    assert lines[0].startswith("error: "), report
    message = lines[0]
    if path is not None:
        assert str(path) in message, f"the message does not name {path}\n{report}"
        message = message.replace(str(path), "<path>")
    for needle in needles:
        assert needle in message, f"{needle!r} not in the message\n{report}"
    if stdout_empty:
        assert proc.stdout == "", report


def run_main(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """``blendin-local ARGS`` in this process (so fixtures may monkeypatch model loading), through
    the same ``main()`` that turns user errors into one line, with stdout and stderr captured."""
    from click.testing import CliRunner

    from blendin_local.cli import main

    argv = sys.argv
    with CliRunner().isolation(input=stdin) as (out, err, _):
        sys.argv = ["blendin-local", *args]
        try:
            main()
            code: int | str | None = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = argv
        stdout, stderr = out.getvalue(), err.getvalue()
    rc = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["blendin-local", *args], rc,
                                       stdout.decode("utf-8", errors="replace"),
                                       stderr.decode("utf-8", errors="replace"))


def assert_ends_with_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """For a run that did its work (progress, a summary on stderr) and then failed: non-zero exit,
    no traceback, and exactly one ``error: ...`` line, the last, holding every needle."""
    report = f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, report
    assert proc.returncode not in (0, None), report
    lines = proc.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith("error: ")] == lines[-1:], report
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in the message\n{report}"
