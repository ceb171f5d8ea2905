"""Keep the app's screen apart from file descriptor 2 while it runs.

Textual draws on ``sys.__stderr__`` (fd 2). llama.cpp writes C-level log lines to fd 2, and the
engine silences them while a model loads by pointing fd 2 at /dev/null for the whole process
(``os.dup2``) — which, with models loading in a worker, swallowed the app's frames: the screen
froze until the load ended. So while the app runs it draws on a private duplicate of the terminal,
and fd 2 goes to a log file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import platformdirs


def log_path() -> Path:
    return Path(platformdirs.user_log_dir("blendin-local")) / "chat-stderr.log"


@contextlib.contextmanager
def private_terminal(log: Path | None = None) -> Iterator[Path | None]:
    """Run the body with Textual on a duplicate of the terminal and fd 2 on ``log``.

    Yields the log's path, or None when nothing was changed (stderr is not a terminal, or this
    is not a POSIX system).
    """
    if os.name != "posix" or not os.isatty(2):
        yield None
        return
    log = log or log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    terminal = os.fdopen(terminal_fd, "w", encoding=sys.stderr.encoding, errors="replace")
    saved = sys.stderr, sys.__stderr__
    with open(log, "wb") as log_file:
        os.dup2(log_file.fileno(), 2)
        # Textual's driver writes to sys.__stderr__ (typeshed marks it Final; it is assignable).
        sys.stderr = sys.__stderr__ = terminal  # type: ignore[misc]
        try:
            yield log
        finally:
            terminal.flush()
            sys.stderr, sys.__stderr__ = saved  # type: ignore[misc]
            os.dup2(terminal_fd, 2)
            terminal.close()
