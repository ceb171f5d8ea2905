"""The standard streams when the program starts with some of them closed (``>&-``, ``2>&-``, ``<&-``).

A closed descriptor 0, 1 or 2 is given ``/dev/null`` first, so that no file opened later takes its
number: with descriptor 2 free, the next ``open()`` lands on it and llama.cpp's log (written to
descriptor 2) goes into that file, or into the answer. Then Python's stream for it, which is
``None``, is replaced: a closed stderr by one writing to ``/dev/null`` (there is nowhere to show a
message), a closed stdin or stdout by one that fails with ``EBADF`` when used, so a command that
needs it ends with one error line instead of a traceback or a silent exit 0.
"""

from __future__ import annotations

import errno
import io
import os
import sys

NAMES = ("stdin", "stdout", "stderr")


class ClosedStream(io.TextIOBase):
    """Stands for a standard stream that was closed at start: reading or writing raises
    ``OSError(EBADF, "<name> is closed")``; flushing what was never written is a no-op."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def _closed(self) -> OSError:
        return OSError(errno.EBADF, f"{self._name} is closed")

    def readable(self) -> bool:
        return self._name == "stdin"

    def writable(self) -> bool:
        return self._name != "stdin"

    def isatty(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> str:
        raise self._closed()

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        raise self._closed()

    def write(self, text: str) -> int:
        raise self._closed()

    @property
    def buffer(self) -> ClosedStream:
        """``sys.stdin.buffer.read()`` fails the same way."""
        return self


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _hold(fd: int) -> None:
    """Put ``/dev/null`` on the free descriptor ``fd``."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def guard_std_streams() -> None:
    """Call first thing: fill closed descriptors 0–2 and replace their Python streams."""
    for fd, name in enumerate(NAMES):
        if _is_open(fd):
            continue
        _hold(fd)
        if name == "stderr":
            stream: io.TextIOBase = open(fd, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                                         closefd=False)
        else:
            stream = ClosedStream(name)
        setattr(sys, name, stream)
