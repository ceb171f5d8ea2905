"""The UTF-8 rule where text enters: refused with where it came from and the byte offset."""

from __future__ import annotations

import os

import pytest

from blendin_local.errors import UsageError
from blendin_local.textin import check_text, decode_text, read_text_file


def argv_text(raw: bytes) -> str:
    """What Python makes of argv bytes on POSIX."""
    return os.fsdecode(raw)


@pytest.mark.parametrize("raw, offset", [
    (b"\xff\xfe hello", 0), (b"caf\xc3", 3), (b"ok \xe2\x82", 3), (b"\xc3\xa9t\xe9", 3),
])
def test_surrogate_escaped_argv_is_refused_at_its_byte_offset(raw, offset):
    with pytest.raises(UsageError, match=rf"^--system is not valid UTF-8 \(bad byte at offset "
                                         rf"{offset}\)$"):
        check_text(argv_text(raw), "--system")
    with pytest.raises(UsageError, match=rf"offset {offset}\)$"):
        decode_text(raw, "stdin")


@pytest.mark.parametrize("text", ["", "plain", "é ü 中文 🙂", "\ufffd already replaced"])
def test_valid_text_passes_unchanged(text):
    assert check_text(text, "x") is text
    assert decode_text(text.encode(), "x") == text


def test_read_text_file_names_the_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc\n\x80")
    with pytest.raises(UsageError, match=r"f\.txt is not valid UTF-8 \(bad byte at offset 4\)"):
        read_text_file(path)
    with pytest.raises(UsageError, match="cannot read .*missing.txt: No such file"):
        read_text_file(tmp_path / "missing.txt")
