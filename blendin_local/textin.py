"""Where user text enters: it must be valid UTF-8, else one line names where it came from and the
byte offset of the first bad byte (never a U+FFFD silently put into a prompt)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .errors import UsageError

# On POSIX, argv bytes that are not UTF-8 arrive as lone surrogates (PEP 383 surrogateescape).
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, where: str) -> str:
    """``text`` unchanged, or :class:`UsageError` if it holds undecodable (surrogate-escaped) bytes."""
    bad = _SURROGATE.search(text)
    if bad is not None:
        offset = len(text[: bad.start()].encode("utf-8"))
        raise UsageError(f"{where} is not valid UTF-8 (bad byte at offset {offset})")
    return text


def decode_text(data: bytes, where: str) -> str:
    """``data`` decoded as UTF-8, or :class:`UsageError` naming ``where`` and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not valid UTF-8 (bad byte at offset {exc.start})") from None


def read_text_file(path: str | Path, where: str | None = None) -> str:
    """A whole text file the user named (one line for a missing, unreadable or non-UTF-8 file)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_text(data, where or str(path))


def read_stdin(where: str = "the text read from stdin") -> str:
    """All of standard input, decoded as UTF-8."""
    try:
        data = sys.stdin.buffer.read()
    except OSError as exc:  # closed (std_streams.ClosedStream) or unreadable
        raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from None
    return decode_text(data, where)
