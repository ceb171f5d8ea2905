"""Outputs the user named: replaced only on success, OSErrors as one line, full disks survived."""

from __future__ import annotations

from pathlib import Path

import pytest

from blendin_local.errors import BlendinError
from blendin_local.fileio import (
    UnsafePathError,
    path_inside,
    replace_atomically,
    streaming_output,
    write_text_atomically,
)


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_streaming_output_replaces_on_success_only(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), streaming_output(path, "--trace") as out:
        assert out is not None
        out.write("new\n")
        assert path.read_text() == "old\n"  # nothing in place before the end
        raise RuntimeError("the run failed")
    assert path.read_text() == "old\n" and names(tmp_path) == ["t.jsonl"]
    with streaming_output(path, "--trace") as out:
        assert out is not None
        out.write("new\n")
    assert path.read_text() == "new\n" and names(tmp_path) == ["t.jsonl"]


def test_streaming_output_commits_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.raises(SystemExit), streaming_output(path, "--trace") as out:
        assert out is not None
        out.write("shown so far\n")
        raise SystemExit(130)  # Ctrl-C: keep what matches the text shown
    assert path.read_text() == "shown so far\n"


def test_full_disk_is_kept_until_the_end() -> None:
    with pytest.raises(BlendinError, match="^--trace: cannot write /dev/full: No space left"):
        with streaming_output("/dev/full", "--trace") as out:
            assert out is not None
            out.write("x" * 10)
            assert out.error is not None  # the run goes on; the error waits
            out.write("more")


def test_unwritable_place_fails_at_once(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    with pytest.raises(BlendinError, match="^--out: cannot write .*f/x.jsonl: Not a directory"):
        with streaming_output(a_file / "x.jsonl", "--out"):
            pass
    with pytest.raises(BlendinError, match="Not a directory"):
        write_text_atomically(a_file / "s.csv", "a,b\n", "--out")


def test_replace_atomically_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")

    def broken(p: Path) -> None:
        p.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(BlendinError, match="--figure: cannot write .*fig.png: No space left"):
        replace_atomically(path, broken, "--figure")
    assert path.read_bytes() == b"old" and names(tmp_path) == ["fig.png"]


# --- paths built from data (issue 16, item 1) ----------------------------------------------------
@pytest.mark.parametrize("name", ["x.json", "sub/x.json", "a/../x.json", "..x.json", "link.json"])
def test_path_inside_keeps_a_name_within_its_folder(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "link.json").symlink_to(tmp_path / "elsewhere.json")  # a write replaces the link
    assert path_inside(folder, name, "chat id") == folder / name


@pytest.mark.parametrize("name", ["../victim.json", "a/../../victim.json", "/etc/passwd", "", ".",
                                  "..", "x/..", "link/x.json", "link/../../victim.json"])
def test_path_inside_refuses_a_name_leading_out(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)  # a symlink inside that leads out
    with pytest.raises(UnsafePathError) as err:
        path_inside(folder, name, "chat id")
    assert str(err.value) == f"chat id {name!r} would lead out of {folder}: refused"
