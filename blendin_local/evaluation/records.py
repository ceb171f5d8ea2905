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

RECORDS = "records.jsonl"
MANIFEST = "run.json"

Key = tuple[str, str, str]  # (method, setting label, item id)


def record_key(record: dict[str, Any]) -> Key:
    return (str(record["method"]), str(record["setting"]), str(record["item"]))


class RecordStore:
    """Finished records of a run directory, and an append-only writer for new ones.

    Opening tolerates a half-written last line (a kill mid-write): it is cut off, and that item
    runs again. A damaged line elsewhere is reported through ``warn`` and ignored.
    """

    def __init__(self, out_dir: Path, warn: Callable[[str], None] = lambda m: None) -> None:
        self.path = out_dir / RECORDS
        self.records: dict[Key, dict[str, Any]] = {}
        self._file: IO[str] | None = None
        self._warn = warn
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {out_dir}: {exc.strerror}") from None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good_end = 0  # byte offset just after the last complete, valid line
        offset = 0
        for n, raw in enumerate(lines, start=1):
            end = offset + len(raw) + 1
            complete = end <= len(data)  # the last piece has no newline after it
            if raw.strip():
                try:
                    record = json.loads(raw)
                    key = record_key(record)
                except (ValueError, KeyError, TypeError):
                    if complete:
                        self._warn(f"{self.path}:{n}: damaged record ignored "
                                   "(that item runs again)")
                    else:
                        self._warn(f"{self.path}:{n}: half-written last record dropped "
                                   "(that item runs again)")
                    offset = end
                    continue
                if not complete:
                    # Valid JSON but no newline: the write was cut just before it; keep it.
                    self.records[key] = record
                    with self.path.open("ab") as f:
                        f.write(b"\n")
                    good_end = end
                    break
                self.records[key] = record
            if complete:
                good_end = end
            offset = end
        if good_end < len(data):
            with self.path.open("r+b") as f:
                f.truncate(good_end)

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and make it durable before returning."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
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
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            changed = [k for k in config if k in old and old[k] != config[k]]
            if changed:
                diffs = ", ".join(f"{k} {old[k]!r} → {config[k]!r}" for k in changed)
                raise UsageError(
                    f"--out {out_dir} holds a run with other settings ({diffs}): "
                    "use another --out directory, or delete that one"
                )
            config = {**old, **config}
    config = {**config, **(info or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
