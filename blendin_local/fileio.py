"""Files the user named as outputs: written beside the target and renamed over it only when the
run succeeds (a failed run leaves an existing file untouched), and any ``OSError`` on them reported
as one line that names the option, the path and the reason."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .errors import BlendinError


def path_error(option: str, path: str | Path, exc: OSError, action: str = "write") -> BlendinError:
    """``--trace: cannot write /x/y.jsonl: Permission denied``."""
    return BlendinError(f"{option}: cannot {action} {path}: {exc.strerror or exc}")


class UnsafePathError(BlendinError):
    """A file name taken from data (a chat id, a Hub listing) that would lead out of its folder."""


def path_inside(folder: str | Path, name: str, what: str) -> Path:
    """``folder / name`` for a ``name`` taken from data, refused unless it stays inside ``folder``:
    ``..``, an absolute name, or a symlinked folder leading out are one line naming ``what``. The
    one check for every path built from data, done before anything is written.

    The folders on the way are resolved, the last name is not: a write replaces that entry (a
    temp file renamed over it), even when it is a symlink (the Hub cache's snapshot files are)."""
    folder = Path(folder)
    path = folder / name
    root, target = folder.resolve(), path.parent.resolve() / path.name
    if path.name in ("", ".", "..") or target == root or not target.is_relative_to(root):
        raise UnsafePathError(f"{what} {name!r} would lead out of {folder}: refused")
    return path


def _is_special(path: Path) -> bool:
    """An existing non-regular file (``/dev/full``, ``/dev/stdout``, a FIFO): written directly,
    since it cannot be replaced by a rename."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _temp_beside(path: Path) -> Path:
    # Same directory (so the rename is atomic); hidden, and not matching a glob of the real files.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove(tmp: Path) -> None:
    with suppress(OSError):  # already renamed, or never created
        tmp.unlink(missing_ok=True)


def replace_atomically(path: str | Path, write: Callable[[Path], object], option: str) -> None:
    """Call ``write(temp)`` and rename the temp file over ``path``; on any failure the temp file is
    removed and an existing ``path`` is untouched. An ``OSError`` becomes one :class:`BlendinError`.
    """
    path = Path(path)
    if _is_special(path):
        try:
            write(path)
        except OSError as exc:
            raise path_error(option, path, exc) from None
        return
    tmp = _temp_beside(path)
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        raise path_error(option, path, exc) from None
    finally:
        _remove(tmp)


def write_text_atomically(path: str | Path, text: str, option: str) -> None:
    replace_atomically(path, lambda p: p.write_text(text, encoding="utf-8"), option)


class StreamingOutput:
    """A text file written line by line during a run (``--trace``, ``replay --out``).

    Lines go to a temp file beside ``path``; :meth:`commit` renames it over ``path``, and
    :meth:`discard` removes it, leaving an existing file untouched. A write that fails (a full
    disk) does not stop the run: the first error is kept in :attr:`error` and later writes are
    dropped, so the caller can finish showing the answer and then report it.
    """

    def __init__(self, path: str | Path, option: str) -> None:
        self.path = Path(path)
        self.option = option
        self.error: BlendinError | None = None
        self._direct = _is_special(self.path)
        self._tmp = self.path if self._direct else _temp_beside(self.path)
        try:
            self._file: IO[str] | None = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise path_error(option, self.path, exc) from None

    def write(self, text: str) -> None:
        if self._file is None or self.error is not None:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self.error = path_error(self.option, self.path, exc)

    def _close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:
            if self.error is None:
                self.error = path_error(self.option, self.path, exc)

    def commit(self) -> None:
        """Put the written lines in place; raises the kept error, if any."""
        self._close()
        if self.error is None and not self._direct:
            try:
                self._tmp.replace(self.path)
            except OSError as exc:
                self.error = path_error(self.option, self.path, exc)
        if not self._direct:
            _remove(self._tmp)
        if self.error is not None:
            raise self.error

    def discard(self) -> None:
        self._close()
        if not self._direct:
            _remove(self._tmp)


@contextmanager
def streaming_output(path: str | Path | None, option: str) -> Iterator[StreamingOutput | None]:
    """A :class:`StreamingOutput` (``None`` when no path is given) committed when the block ends
    normally or by ``sys.exit`` (Ctrl-C keeps what was shown), discarded when it raises."""
    out = StreamingOutput(path, option) if path is not None else None
    try:
        yield out
    except SystemExit:
        if out is not None:
            out.commit()
        raise
    except BaseException:
        if out is not None:
            out.discard()
        raise
    if out is not None:
        out.commit()
