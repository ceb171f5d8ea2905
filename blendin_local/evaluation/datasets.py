"""Readers for the benchmarks' own published file formats (no download at run time).

Every reader yields :class:`Item` records; a malformed row is reported as a :class:`BadRow` naming
the file and line, then skipped or made fatal by the caller's policy — never dropped silently.

Formats:
- ``gsm8k``: JSONL, ``{"question": ..., "answer": "... #### 72"}``.
- ``arc``: JSONL, ``{"id", "question": {"stem", "choices": [{"label", "text"}]}, "answerKey"}``;
  numeric labels ("1".."5") are shown as letters.
- ``mmlu``: CSV without header, ``question,A,B,C,D,answer`` (a ``question,...`` header is accepted).
- ``truthfulqa``: ``TruthfulQA.csv`` (header: Type, Category, Question, Best Answer, Correct
  Answers, Incorrect Answers, Source). Scored as multiple choice: the Best Answer against the
  Best Incorrect Answer (when the file has that column) and then the Incorrect Answers in file
  order (split on ``;``), at most :data:`TRUTHFULQA_OPTIONS` options, in an order fixed by a
  hash of the question (the same for every method and re-run).
- ``xstest``: CSV with ``prompt`` and ``type``; the label is the ``label`` column (safe/unsafe)
  when present, else ``unsafe`` for ``contrast_*`` types and ``safe`` otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BlendinError

LETTERS = "ABCDEFGHIJ"
TRUTHFULQA_OPTIONS = 4
MC_INSTRUCTION = "Answer with the letter of the correct option."


class DataFileError(BlendinError):
    """A data file that cannot be read, or a malformed row under ``--on-bad-row fail``."""


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    ``answer`` is the gold answer: a number (gsm8k), a letter (multiple choice), or ``safe`` /
    ``unsafe`` (xstest). ``choices`` are the option texts in letter order (multiple choice only).
    """

    id: str
    question: str
    answer: str
    line: int
    choices: tuple[str, ...] = ()
    category: str = ""

    @property
    def prompt(self) -> str:
        """The question as the models see it (options listed with letters)."""
        if not self.choices:
            return self.question
        options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(self.choices))
        return f"{self.question}\n{options}\n{MC_INSTRUCTION}"


@dataclass(frozen=True)
class BadRow:
    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class RowError(ValueError):
    """Raised inside a row parser; becomes a :class:`BadRow`."""


Row = tuple[int, Any]  # (line number, parsed row)
Parsed = Item | BadRow


# --- row sources ----------------------------------------------------------------------------
def _open_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(f"--data: file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"--data: {path} is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise DataFileError(f"--data: cannot read {path}: {exc.strerror}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any] | BadRow]:
    for n, line in enumerate(_open_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRow(path, n, f"not valid JSON ({exc.msg})")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]] | BadRow]:
    text = _open_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(path, start, f"CSV error ({exc})")
            start = reader.line_num + 1
            continue
        if any(cell.strip() for cell in row):
            yield start, row
        start = reader.line_num + 1


def _field(d: Any, key: str) -> str:
    if not isinstance(d, dict):
        raise RowError(f"expected a JSON object, got {type(d).__name__}")
    value = d.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"missing or empty {key!r}")
    return value.strip()


def item_id(*parts: str) -> str:
    """A stable id from the text that defines an item (survives reordering the file)."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:12]


# --- GSM8K ----------------------------------------------------------------------------------
_GOLD = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_gold(answer: str) -> str:
    """The final answer after ``####`` as a plain number string (commas and ``$`` removed)."""
    from .scoring import normalise_number

    m = _GOLD.search(answer)
    if not m:
        raise RowError("the answer has no '#### <number>' final answer")
    number = normalise_number(m.group(1))
    if number is None:
        raise RowError(f"the final answer {m.group(1)!r} is not a number")
    return number


def _jsonl_items(path: Path, item_of: Callable[[Any, int], Item]) -> Iterator[Parsed]:
    """Each JSONL row through ``item_of``; a row it refuses (``RowError``) becomes a ``BadRow``."""
    for row in _jsonl_rows(path):
        if isinstance(row, BadRow):
            yield row
            continue
        n, d = row
        try:
            yield item_of(d, n)
        except RowError as exc:
            yield BadRow(path, n, str(exc))


def _gsm8k_item(d: Any, n: int) -> Item:
    question = _field(d, "question")
    gold = gsm8k_gold(_field(d, "answer"))
    return Item(id=item_id("gsm8k", question), question=question, answer=gold, line=n)


def _gsm8k(path: Path) -> Iterator[Parsed]:
    return _jsonl_items(path, _gsm8k_item)


# --- ARC ------------------------------------------------------------------------------------
def _arc(path: Path) -> Iterator[Parsed]:
    return _jsonl_items(path, _arc_item)


def _arc_item(d: Any, n: int) -> Item:
    q = d.get("question") if isinstance(d, dict) else None
    if not isinstance(q, dict):
        raise RowError("missing 'question' object")
    stem = _field(q, "stem")
    choices = q.get("choices")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise RowError(f"'question.choices' must be a list of 2 to {len(LETTERS)} options")
    labels, texts = [], []
    for c in choices:
        labels.append(_field(c, "label"))
        texts.append(_field(c, "text"))
    if len(set(labels)) != len(labels):
        raise RowError(f"duplicate choice labels {labels}")
    key = _field(d, "answerKey")
    if key not in labels:
        raise RowError(f"answerKey {key!r} is not one of the labels {labels}")
    given = d.get("id")
    ident = str(given) if isinstance(given, str | int) and str(given) else ""
    ident = ident or item_id("arc", stem, *texts)
    return Item(id=ident, question=stem, answer=LETTERS[labels.index(key)], line=n,
                choices=tuple(texts))


# --- MMLU -----------------------------------------------------------------------------------
def _mmlu(path: Path) -> Iterator[Parsed]:
    first = True
    for row in _csv_rows(path):
        if isinstance(row, BadRow):
            yield row
            continue
        n, cells = row
        if first and cells and cells[0].strip().lower() == "question":
            first = False
            continue  # a header row, as some exports of the CSVs have
        first = False
        if len(cells) != 6:
            yield BadRow(path, n, f"expected 6 columns (question,A,B,C,D,answer), got {len(cells)}")
            continue
        question, *options, answer = (c.strip() for c in cells)
        answer = answer.upper()
        if not question or not all(options):
            yield BadRow(path, n, "empty question or option")
        elif answer not in LETTERS[:4]:
            yield BadRow(path, n, f"answer must be A, B, C or D, got {cells[5]!r}")
        else:
            yield Item(id=item_id("mmlu", question, *options), question=question, answer=answer,
                       line=n, choices=tuple(options), category=path.stem)


# --- CSV files with a header ----------------------------------------------------------------
def _dict_rows(
    path: Path, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]] | BadRow]:
    rows = _csv_rows(path)
    header_row = next(rows, None)
    if header_row is None:
        return
    if isinstance(header_row, BadRow):
        raise DataFileError(f"{header_row} (in the header row)")
    _, header = header_row
    names = [h.strip().lower() for h in header]
    missing = [r for r in required if r not in names]
    if missing:
        raise DataFileError(
            f"{path}: the header has no column {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(header)})"
        )
    for row in rows:
        if isinstance(row, BadRow):
            yield row
            continue
        n, cells = row
        if len(cells) != len(names):
            yield BadRow(path, n, f"expected {len(names)} columns, got {len(cells)}")
            continue
        yield n, {k: v.strip() for k, v in zip(names, cells, strict=True)}


def _split_answers(cell: str) -> list[str]:
    return [a.strip() for a in cell.split(";") if a.strip()]


def truthfulqa_options(question: str, best: str, incorrect: list[str]) -> tuple[list[str], int]:
    """The options (best answer + up to 3 incorrect) in a hash-fixed order; index of the best."""
    wrong: list[str] = []
    for a in incorrect:
        if a.lower() != best.lower() and a.lower() not in (w.lower() for w in wrong):
            wrong.append(a)
    options = [best, *wrong[: TRUTHFULQA_OPTIONS - 1]]
    keys = [hashlib.sha1(f"{question}\x1f{o}".encode()).hexdigest() for o in options]
    order = sorted(range(len(options)), key=keys.__getitem__)
    return [options[i] for i in order], order.index(0)


def _truthfulqa(path: Path) -> Iterator[Parsed]:
    for row in _dict_rows(path, ("question", "best answer", "incorrect answers")):
        if isinstance(row, BadRow):
            yield row
            continue
        n, d = row
        question, best = d["question"], d["best answer"]
        incorrect = _split_answers(d.get("best incorrect answer", "")) + _split_answers(
            d["incorrect answers"]
        )
        if not question or not best:
            yield BadRow(path, n, "empty Question or Best Answer")
            continue
        options, gold = truthfulqa_options(question, best, incorrect)
        if len(options) < 2:
            yield BadRow(path, n, "no Incorrect Answers to choose against")
            continue
        yield Item(id=item_id("truthfulqa", question), question=question, answer=LETTERS[gold],
                   line=n, choices=tuple(options), category=d.get("category", ""))


def _xstest(path: Path) -> Iterator[Parsed]:
    for row in _dict_rows(path, ("prompt",)):
        if isinstance(row, BadRow):
            yield row
            continue
        n, d = row
        prompt, kind, label = d["prompt"], d.get("type", ""), d.get("label", "").lower()
        if not prompt:
            yield BadRow(path, n, "empty prompt")
        elif label and label not in ("safe", "unsafe"):
            yield BadRow(path, n, f"label must be 'safe' or 'unsafe', got {d['label']!r}")
        elif not label and not kind:
            yield BadRow(path, n, "neither a 'label' nor a 'type' to tell safe from unsafe")
        else:
            label = label or ("unsafe" if kind.lower().startswith("contrast_") else "safe")
            yield Item(id=d.get("id") or item_id("xstest", prompt), question=prompt, answer=label,
                       line=n, category=kind)


READERS: dict[str, Callable[[Path], Iterator[Parsed]]] = {
    "gsm8k": _gsm8k,
    "arc": _arc,
    "mmlu": _mmlu,
    "truthfulqa": _truthfulqa,
    "xstest": _xstest,
}
TASK_NAMES: tuple[str, ...] = tuple(READERS)


def load_items(
    path: Path | str,
    task: str,
    *,
    on_bad_row: str = "skip",
    limit: int | None = None,
    report: Callable[[BadRow], None] = lambda bad: None,
) -> list[Item]:
    """The first ``limit`` well-formed items of ``path`` read as ``task``.

    Each malformed row is passed to ``report`` (and skipped), or raises :class:`DataFileError`
    with ``on_bad_row="fail"``. Items with the same id (a repeated question) get ``#2``, ``#3``.
    """
    if task not in READERS:
        raise DataFileError(f"--task must be one of {', '.join(TASK_NAMES)}, got {task!r}")
    if on_bad_row not in ("skip", "fail"):
        raise DataFileError(f"--on-bad-row must be 'skip' or 'fail', got {on_bad_row!r}")
    items: list[Item] = []
    seen: dict[str, int] = {}
    for parsed in READERS[task](Path(path)):
        if isinstance(parsed, BadRow):
            if on_bad_row == "fail":
                raise DataFileError(f"bad row {parsed} (use --on-bad-row skip to skip it)")
            report(parsed)
            continue
        if limit is not None and len(items) >= limit:
            break
        count = seen[parsed.id] = seen.get(parsed.id, 0) + 1
        if count > 1:
            parsed = Item(**{**parsed.__dict__, "id": f"{parsed.id}#{count}"})
        items.append(parsed)
    if not items:
        raise DataFileError(f"--data: no usable {task} items in {path}")
    return items
