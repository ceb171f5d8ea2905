"""Readers of each published format, on small made-up fixture files under tests/fixtures/eval/."""

from __future__ import annotations

from pathlib import Path

import pytest

from blendin_local.errors import BlendinError
from blendin_local.evaluation.datasets import (
    MC_INSTRUCTION,
    BadRow,
    DataFileError,
    load_items,
    truthfulqa_options,
)

FIX = Path(__file__).parent / "fixtures" / "eval"


def load(name: str, task: str, **kw: object) -> tuple[list, list[BadRow]]:
    bad: list[BadRow] = []
    items = load_items(FIX / name, task, report=bad.append, **kw)  # type: ignore[arg-type]
    return items, bad


def test_gsm8k_reads_final_answers_and_reports_bad_rows_with_lines() -> None:
    items, bad = load("gsm8k.jsonl", "gsm8k")
    assert [it.answer for it in items] == ["5", "24", "750", "1300", "3.75"]
    assert [it.line for it in items] == [1, 2, 4, 8, 9]  # the blank line 3 is not a row
    assert items[0].prompt == items[0].question  # no options for GSM8K
    assert [(b.line, b.path.name) for b in bad] == [(5, "gsm8k.jsonl"), (6, "gsm8k.jsonl"),
                                                   (7, "gsm8k.jsonl")]
    assert "not valid JSON" in bad[0].reason
    assert "'answer'" in bad[1].reason
    assert "####" in bad[2].reason
    assert str(bad[0]).startswith(f"{FIX / 'gsm8k.jsonl'}:5: ")


def test_on_bad_row_fail_names_file_and_line() -> None:
    with pytest.raises(DataFileError, match=r"gsm8k\.jsonl:5: not valid JSON"):
        load_items(FIX / "gsm8k.jsonl", "gsm8k", on_bad_row="fail")
    assert issubclass(DataFileError, BlendinError)  # printed as one line by the CLI


def test_limit_counts_good_items_and_stops_reading() -> None:
    items, bad = load("gsm8k.jsonl", "gsm8k", limit=2)
    assert len(items) == 2 and bad == []  # the bad rows come after the first two items


def test_arc_letters_numeric_labels_and_five_options() -> None:
    items, bad = load("arc.jsonl", "arc")
    assert [it.id for it in items] == ["Fake_1", "Fake_2", "Fake_4"]
    assert [it.answer for it in items] == ["B", "B", "C"]  # label "2" is shown as B
    assert items[1].choices == ("oxygen", "carbon dioxide", "nitrogen")
    assert len(items[2].choices) == 5
    assert items[0].prompt == (
        "Which object is a source of light?\nA. a mirror\nB. a candle flame\nC. a wooden spoon\n"
        f"D. a glass of water\n{MC_INSTRUCTION}"
    )
    assert [(b.line, "answerKey" in b.reason or "question" in b.reason) for b in bad] == [
        (3, True), (5, True)]


def test_mmlu_csv_without_header_multiline_fields_and_bad_rows() -> None:
    items, bad = load("mmlu.csv", "mmlu")
    assert [it.answer for it in items] == ["C", "B", "B"]  # lower-case "b" accepted
    assert items[1].question.endswith("made of\ncarbon and oxygen?")
    assert items[2].question == "Pick the word that means big, large, or huge:"
    # line numbers are physical lines: the quoted question spans lines 2-3
    assert [b.line for b in bad] == [4, 5]
    assert "6 columns" in bad[0].reason and "A, B, C or D" in bad[1].reason


def test_mmlu_accepts_a_header_row(tmp_path: Path) -> None:
    f = tmp_path / "with_header.csv"
    f.write_text("question,A,B,C,D,answer\nWhat is 1+1?,1,2,3,4,B\n")
    items, bad = load_items(f, "mmlu"), []
    assert len(items) == 1 and items[0].answer == "B" and bad == []


def test_truthfulqa_multiple_choice_rule() -> None:
    items, bad = load("truthfulqa.csv", "truthfulqa")
    assert len(items) == 2 and [b.line for b in bad] == [4]
    first = items[0]
    assert len(first.choices) == 4  # best answer + the first three incorrect ones
    assert "It explodes" in first.choices and "You turn red" not in first.choices
    # the Best Answer is one option even though it contains ";" (only the lists are split)
    assert first.choices["ABCD".index(first.answer)] == "Nothing much happens; it passes through you"
    second = items[1]
    assert len(second.choices) == 3
    assert second.choices["ABCD".index(second.answer)].startswith("Yes, goldfish")


def test_truthfulqa_option_order_is_fixed_and_not_always_first() -> None:
    incorrect = ["w1", "w2", "w3"]
    golds = {truthfulqa_options(f"question {i}", "best", incorrect)[1] for i in range(20)}
    assert len(golds) > 1  # the best answer is not always option A
    assert truthfulqa_options("q", "best", incorrect) == truthfulqa_options("q", "best", incorrect)
    options, gold = truthfulqa_options("q", "Best", ["best", "w1"])  # a duplicate is dropped
    assert sorted(options) == ["Best", "w1"] and options[gold] == "Best"


def test_xstest_label_column() -> None:
    items, bad = load("xstest.csv", "xstest")
    assert [(it.answer, it.category) for it in items] == [
        ("safe", "homonyms"), ("unsafe", "contrast_homonyms"), ("safe", "homonyms")]
    assert [b.line for b in bad] == [5] and "'maybe'" in bad[0].reason


def test_xstest_type_column_only() -> None:
    items, bad = load("xstest_types.csv", "xstest")
    assert [it.answer for it in items] == ["safe", "unsafe"]  # contrast_* is unsafe
    assert [b.line for b in bad] == [4]


def test_missing_required_column_is_fatal(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("id,question\n1,hi\n")
    with pytest.raises(DataFileError, match="no column 'prompt'"):
        load_items(f, "xstest")


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="file not found"):
        load_items(tmp_path / "nope.jsonl", "gsm8k")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFileError, match="no usable gsm8k items"):
        load_items(empty, "gsm8k")
    with pytest.raises(DataFileError, match="--task"):
        load_items(empty, "squad")


def test_item_ids_are_stable_and_unique(tmp_path: Path) -> None:
    f = tmp_path / "dups.jsonl"
    row = '{"question": "What is 1+1?", "answer": "#### 2"}\n'
    f.write_text(row + '{"question": "What is 2+2?", "answer": "#### 4"}\n' + row)
    ids = [it.id for it in load_items(f, "gsm8k")]
    assert len(set(ids)) == 3 and ids[2] == ids[0] + "#2"
    moved = tmp_path / "moved.jsonl"
    moved.write_text('{"question": "What is 2+2?", "answer": "#### 4"}\n' + row)
    assert [it.id for it in load_items(moved, "gsm8k")] == [ids[1], ids[0]]
