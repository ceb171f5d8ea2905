"""The run directory: one JSONL record per (method, setting, item), appended and flushed as soon as
it exists, so an interrupted run loses at most the item in flight; ``run.json`` pins the settings
that records of one directory must share."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError
from ..fileio import path_error, replace_atomically, write_text_atomically

RECORDS = "records.jsonl"
MANIFEST = "run.json"
DAMAGED = "records.damaged.jsonl"

Key = tuple[str, str, str]  # (method, setting label, item id)


def record_key(record: dict[str, Any]) -> Key:
    return (str(record["method"]), str(record["setting"]), str(record["item"]))


class RecordStore:
    """Finished records of a run directory, and an append-only writer for new ones.

    Opening never deletes a line: a damaged line (a kill mid-write, an edit) is moved to
    ``records.damaged.jsonl`` and reported through ``warn``, and its item runs again. (Whether the
    directory is ours at all is :func:`check_manifest`'s question, asked first.)
    """

    def __init__(self, out_dir: Path, warn: Callable[[str], None] = lambda m: None) -> None:
        self.path = out_dir / RECORDS
        self.damaged_path = out_dir / DAMAGED
        self.records: dict[Key, dict[str, Any]] = {}
        self._file: IO[str] | None = None
        self._warn = warn
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise path_error("--out", out_dir, exc, action="create") from None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise path_error("--out", self.path, exc, action="read") from None
        good: list[bytes] = []
        damaged: list[tuple[int, bytes]] = []
        lines = data.split(b"\n")
        cut = bool(data) and not data.endswith(b"\n")  # the last write was cut
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                key = record_key(record)
            except (ValueError, KeyError, TypeError):
                damaged.append((n, raw))
                continue
            self.records[key] = record
            good.append(raw)
        if damaged:
            self._move_damaged(good, damaged, cut_line=len(lines) if cut else None)
        elif cut:
            # Valid JSON but no newline: the write was cut just before it; keep it.
            with self.path.open("ab") as f:
                f.write(b"\n")

    def _move_damaged(self, good: list[bytes], damaged: list[tuple[int, bytes]],
                      cut_line: int | None) -> None:
        """Append the damaged lines to records.damaged.jsonl, then rewrite records.jsonl without
        them (temp + rename): at every moment each line is in one of the two files."""
        try:
            with self.damaged_path.open("ab") as f:
                f.write(b"".join(raw + b"\n" for _, raw in damaged))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise path_error("--out", self.damaged_path, exc) from None
        body = b"".join(raw + b"\n" for raw in good)
        replace_atomically(self.path, lambda p: p.write_bytes(body), "--out")
        for n, _ in damaged:
            what = "half-written last" if n == cut_line else "damaged"
            self._warn(f"{self.path}:{n}: {what} record moved to {self.damaged_path.name} "
                       "(that item runs again)")

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable before returning."""
        try:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise path_error("--out", self.path, exc) from None
        self.records[record_key(record)] = record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def select(self, keys: Iterable[Key]) -> list[dict[str, Any]]:
        """The records of ``keys`` that exist, in the order of ``keys``."""
        return [self.records[k] for k in keys if k in self.records]


def check_manifest(
    out_dir: Path, config: dict[str, Any], info: dict[str, Any] | None = None
) -> None:
    """Write ``run.json``, or check that an existing one has the same ``config``.

    Records made with other models or decoding settings must not be mixed into one summary.
    ``info`` is written for the reader but not compared (e.g. the data file's path: records are
    keyed by item content, so a moved or extended file resumes fine).
    """
    path = out_dir / MANIFEST
    if path.exists():
        old = _read_manifest(path)
        missing = [k for k in config if k not in old]
        changed = [k for k in config if k in old and old[k] != config[k]]
        if missing:
            raise UsageError(f"--out {out_dir}: {path.name} does not record {', '.join(missing)}, "
                             "so its records cannot be checked: use another --out directory")
        if changed:
            diffs = ", ".join(f"{k} {old[k]!r} → {config[k]!r}" for k in changed)
            raise UsageError(
                f"--out {out_dir} holds a run with other settings ({diffs}): "
                "use another --out directory, or delete that one"
            )
        config = {**old, **config}
    elif (out_dir / RECORDS).exists():
        raise UsageError(f"--out {out_dir} holds {RECORDS} but no {MANIFEST}, so the settings "
                         "that made its records are unknown: use another --out directory")
    config = {**config, **(info or {})}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error("--out", out_dir, exc, action="create") from None
    write_text_atomically(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n", "--out")


def _read_manifest(path: Path) -> dict[str, Any]:
    """An existing run.json; a damaged one is refused (and kept), never silently replaced."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise path_error("--out", path, exc, action="read") from None
    except ValueError:  # UnicodeDecodeError included
        old = None
    if not isinstance(old, dict):
        raise UsageError(f"{path} is damaged (not a JSON object), so the settings of the records "
                         "beside it are unknown: use another --out directory")
    return old
