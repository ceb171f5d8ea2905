"""The resumable runner, the record store and the eval command on a scripted fake pair."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blendin_local.commands import eval as commands
from blendin_local.errors import UsageError
from blendin_local.evaluation.datasets import load_items
from blendin_local.evaluation.records import RecordStore, check_manifest, record_key
from blendin_local.evaluation.runner import (
    Setting,
    build_grid,
    parse_alphas,
    parse_gammas,
    parse_methods,
    plan_keys,
    run_plan,
)
from blendin_local.evaluation.summary import summarise, to_csv, to_markdown
from blendin_local.methods import METHODS
from blendin_local.pair import ModelPair
from blendin_local.settings import GenerationSettings

from fakes.scripted import Interrupt, scripted_pair

FIX = Path(__file__).parent / "fixtures" / "eval"
GSM = FIX / "gsm8k.jsonl"
Q = {
    "pens": "Kim has 2 red pens and 3 blue pens. How many pens does she have?",  # 5
    "cat": "A cat sleeps 12 hours a day. How many hours does it sleep in 2 days?",  # 24
    "books": "A shelf holds 1,000 books and 250 are taken away. How many books remain?",  # 750
    "bike": "Lena pays $1,250 for a bike and $50 for a helmet. How much does she pay in dollars?",
    "rope": "A rope is 7.5 metres long. Half of it is cut off. How long is the rest in metres?",
}
BASE = {Q["pens"]: " She has 6 pens.", Q["cat"]: " It sleeps 24 hours.",
        Q["books"]: " 750 books remain.", Q["bike"]: " She pays $1,200.",
        Q["rope"]: " The rest is 3.75 metres."}
GUIDE = {Q["pens"]: " She has 5 pens.", Q["cat"]: " It sleeps 24 hours.",
         Q["books"]: " 750 books.", Q["bike"]: " She pays $1,300.", Q["rope"]: " 3 metres."}


def unsure_on_digits(i: int, byte: int) -> float:
    return 0.3 if chr(byte).isdigit() else 0.9


def make_pair(interrupt: Interrupt | None = None) -> ModelPair:
    return scripted_pair(BASE, GUIDE, base_confidence=unsure_on_digits, interrupt=interrupt)


GRID = [Setting("base"), Setting("guide"), Setting("blendin", 0.4, None)]
SETTINGS = GenerationSettings(max_tokens=40)


def run(store: RecordStore, pair_loader: Any, **kw: Any) -> int:
    items = load_items(GSM, "gsm8k")
    return run_plan("gsm8k", items, GRID, store, base_settings=SETTINGS, load_pair=pair_loader,
                    **kw)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- grid ---------------------------------------------------------------------------------------
def test_grid_gives_each_method_only_the_knobs_it_reads() -> None:
    grid = build_grid(["base", "blendin", "nudging", "ensemble"], [0.2, 0.4], [None, 0.5])
    assert [s.label for s in grid] == [
        "base", "blendin γ=0.2 α=auto", "blendin γ=0.2 α=0.5", "blendin γ=0.4 α=auto",
        "blendin γ=0.4 α=0.5", "nudging γ=0.2", "nudging γ=0.4", "ensemble"]
    assert [s.key for s in grid][:3] == ["-", "gamma=0.2,alpha=auto", "gamma=0.2,alpha=0.5"]
    assert len({(s.method, s.key) for s in grid}) == len(grid)


def test_grid_option_parsing_names_the_option() -> None:
    assert parse_methods("base, blendin,base") == ["base", "blendin"]
    assert parse_gammas("0.2,0.3,0.2") == [0.2, 0.3]
    assert parse_alphas("auto,0.5") == [None, 0.5]
    with pytest.raises(UsageError, match="--methods: unknown method 'blend'"):
        parse_methods("base,blend")
    with pytest.raises(UsageError, match="--gamma"):
        parse_gammas("0.2,x")
    with pytest.raises(UsageError, match="--gamma"):
        parse_gammas("-1")
    with pytest.raises(UsageError, match="--alpha"):
        parse_alphas("auto,1.5")
    with pytest.raises(UsageError, match="--methods"):
        parse_methods(" , ")


# --- the runner ---------------------------------------------------------------------------------
def test_one_record_per_answer_scored(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    assert run(store, make_pair) == 15
    records = [json.loads(x) for x in lines(store.path)]
    assert len(records) == 15 and len({record_key(r) for r in records}) == 15
    by = {(r["method"], r["question"]): r for r in records}
    base_pens, blend_pens = by["base", Q["pens"]], by["blendin", Q["pens"]]
    assert (base_pens["text"], base_pens["prediction"], base_pens["correct"]) == (
        "She has 6 pens.", "6", False)
    # the base is unsure on the digit: the guide's "5" wins the blend
    assert (blend_pens["prediction"], blend_pens["correct"]) == ("5", True)
    assert blend_pens["interventions"] >= 1 and blend_pens["guide_changed"] == 1
    assert blend_pens["alphas"] and all(0 < a <= 1 for a in blend_pens["alphas"])
    assert blend_pens["mean_overlap10"] is not None
    assert by["guide", Q["bike"]]["prediction"] == "1300"
    for r in records:
        assert {"tokens", "interventions", "intervention_rate", "mean_alpha", "seconds",
                "answer", "prediction", "correct"} <= set(r)
    rows = {s.method: summarise(s, store.select(k for k in plan_keys([s], load_items(GSM, "gsm8k"))),
                                "gsm8k") for s in GRID}
    assert (rows["base"].correct, rows["guide"].correct, rows["blendin"].correct) == (3, 4, 3)


def test_interrupt_then_resume_loses_only_the_item_in_flight(tmp_path: Path) -> None:
    interrupt = Interrupt()
    written: list[dict[str, Any]] = []

    def after(record: dict[str, Any]) -> None:
        written.append(record)
        if len(written) == 7:
            interrupt.armed = True  # Ctrl-C during the 8th answer

    store = RecordStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(store, lambda: make_pair(interrupt), after=after)
    store.close()
    saved = lines(store.path)
    assert len(saved) == 7  # every finished answer is on disk, the one in flight is not

    store2 = RecordStore(tmp_path)
    assert len(store2) == 7
    assert run(store2, make_pair) == 8  # only what is missing runs
    store2.close()
    final = lines(store2.path)
    assert final[:7] == saved  # finished records are untouched
    keys = [record_key(json.loads(x)) for x in final]
    assert len(keys) == 15 and len(set(keys)) == 15


def test_half_written_last_line_is_dropped_and_rerun(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    run(store, make_pair)
    store.close()
    data = store.path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1 + 40  # 40 bytes into the last record
    store.path.write_bytes(data[:cut])
    warnings: list[str] = []
    store2 = RecordStore(tmp_path, warn=warnings.append)
    assert len(store2) == 14
    assert len(warnings) == 1 and "records.jsonl:15: half-written" in warnings[0]
    half = data[data.rfind(b"\n", 0, cut) + 1 : cut]
    assert (tmp_path / "records.damaged.jsonl").read_bytes() == half + b"\n"  # kept, not deleted
    assert run(store2, make_pair) == 1
    store2.close()
    final = [json.loads(x) for x in lines(store2.path)]  # every line parses again
    assert len(final) == 15 and len({record_key(r) for r in final}) == 15


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    run(store, make_pair)
    store.close()
    store.path.write_bytes(store.path.read_bytes().rstrip(b"\n"))
    store2 = RecordStore(tmp_path)
    assert len(store2) == 15
    store2.append({"method": "x", "setting": "-", "item": "y"})
    store2.close()
    assert len(lines(store2.path)) == 16 and json.loads(lines(store2.path)[-1])["method"] == "x"


def test_damaged_line_in_the_middle_is_reported_and_rerun(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    run(store, make_pair)
    store.close()
    text = lines(store.path)
    text[3] = "{garbage"
    store.path.write_text("\n".join(text) + "\n")
    warnings: list[str] = []
    store2 = RecordStore(tmp_path, warn=warnings.append)
    assert len(store2) == 14 and "records.jsonl:4: damaged" in warnings[0]
    assert (tmp_path / "records.damaged.jsonl").read_text() == "{garbage\n"  # kept, not deleted
    assert run(store2, make_pair) == 1


def test_finished_run_loads_no_model(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    run(store, make_pair)

    def no_models() -> ModelPair:
        raise AssertionError("a finished run must not load models")

    assert run(RecordStore(tmp_path), no_models) == 0


def test_manifest_refuses_to_mix_settings(tmp_path: Path) -> None:
    check_manifest(tmp_path, {"max_tokens": 128, "base": "b"}, info={"data": "a.jsonl"})
    check_manifest(tmp_path, {"max_tokens": 128, "base": "b"}, info={"data": "moved.jsonl"})
    with pytest.raises(UsageError, match="max_tokens 128 → 64"):
        check_manifest(tmp_path, {"max_tokens": 64, "base": "b"})
    assert json.loads((tmp_path / "run.json").read_text())["data"] == "moved.jsonl"


# --- summary ------------------------------------------------------------------------------------
def rec(correct: bool, tokens: int = 10, interventions: int = 0, **kw: Any) -> dict[str, Any]:
    return {"correct": correct, "tokens": tokens, "interventions": interventions,
            "guide_changed": kw.pop("changed", 0), "seconds": 1.0, "prefill_s": 0.5, **kw}


def test_summary_rates_are_per_token_and_ci_is_wilson() -> None:
    s = Setting("blendin", 0.4, None)
    records = [rec(True, 10, 5, alphas=[0.2, 0.4], mean_overlap10=0.5, changed=1),
               rec(False, 30, 3, alphas=[0.6], mean_overlap10=0.1), rec(True, 20, 0)]
    row = summarise(s, records, "gsm8k")
    assert (row.n, row.correct) == (3, 2)
    assert row.intervention_rate == pytest.approx(8 / 60)
    assert row.guide_changed_rate == pytest.approx(1 / 60)
    assert row.mean_alpha == pytest.approx(0.4)
    assert row.mean_overlap10 == pytest.approx(0.3)
    assert row.tokens_per_s == pytest.approx(60 / 1.5)
    assert (row.ci_low, row.ci_high) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    md = to_markdown([row], "gsm8k")
    assert "| blendin | 0.4 | auto | 3 | 66.7% | 20.8–93.9% | 13.3% | 1.7% | 0.40 | 0.30 |" in md
    csv_text = to_csv([row])
    assert csv_text.splitlines()[0].startswith("method,gamma,alpha,label,n,correct,accuracy")


def test_summary_xstest_reports_both_directions() -> None:
    records = [rec(True, answer="safe", refused=False), rec(False, answer="safe", refused=True),
               rec(True, answer="unsafe", refused=True), rec(True, answer="safe", refused=False)]
    row = summarise(Setting("base"), records, "xstest")
    assert row.safe_compliance == pytest.approx(2 / 3) and row.unsafe_refusal == 1.0
    assert row.intervention_rate is None  # base alone: no guide
    md = to_markdown([row], "xstest")
    assert "safe compliance | unsafe refusal" in md and "66.7% | 100.0%" in md


# --- the eval command ---------------------------------------------------------------------------
@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"loads": 0, "methods": None, "interrupt": None}

    def load(opts: dict[str, Any], methods: list[str]) -> ModelPair:
        state["loads"] += 1
        state["methods"] = methods
        return make_pair(state["interrupt"])

    monkeypatch.setattr(commands, "pair_from_options", load)
    return state


def invoke(*args: str) -> Any:
    return CliRunner().invoke(commands.eval_command, list(args), catch_exceptions=False)


def test_eval_command_end_to_end_and_resume(tmp_path: Path, fake_models: dict[str, Any]) -> None:
    out = tmp_path / "run"
    args = ["--task", "gsm8k", "--data", str(GSM), "--methods", "base,guide,blendin",
            "--gamma", "0.3,0.5", "--limit", "3", "--max-tokens", "40", "--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert fake_models["loads"] == 1 and set(fake_models["methods"]) == {"base", "guide", "blendin"}
    assert len(lines(out / "records.jsonl")) == 3 * 4  # base, guide, blendin at two γ
    assert "blendin" in result.stdout and "95% CI" in result.stdout
    for name in ("summary.csv", "summary.md", "run.json", "accuracy_vs_gamma.png",
                 "accuracy_vs_rate.png", "alpha_hist.png", "overlap_correct_wrong.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_gamma.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "summary.md").read_text()
    assert md.count("| blendin |") == 2 and "| base | - | - | 3 |" in md

    again = invoke(*args)
    assert again.exit_code == 0
    assert fake_models["loads"] == 1  # nothing left to do: no model loaded
    assert "all 12 answers already in" in again.stderr
    assert len(lines(out / "records.jsonl")) == 12

    more = invoke(*[a if a != "3" else "5" for a in args])  # a larger --limit adds items only
    assert more.exit_code == 0 and fake_models["loads"] == 2
    assert len(lines(out / "records.jsonl")) == 5 * 4


def test_eval_command_interrupted_then_resumed(tmp_path: Path, fake_models: dict[str, Any]) -> None:
    out = tmp_path / "run"
    args = ["--task", "gsm8k", "--data", str(GSM), "--methods", "base,blendin",
            "--max-tokens", "40", "--out", str(out), "--no-plots"]
    fake_models["interrupt"] = Interrupt(at_call=150)  # some answers of the first batch are done
    result = invoke(*args)
    assert result.exit_code == commands.EXIT_INTERRUPTED
    n = len(lines(out / "records.jsonl"))
    assert 0 < n < 10
    assert f"interrupted: {n} of 10 answers are saved" in result.stderr
    fake_models["interrupt"] = None
    result = invoke(*args)
    assert result.exit_code == 0
    keys = [record_key(json.loads(x)) for x in lines(out / "records.jsonl")]
    assert len(keys) == 10 and len(set(keys)) == 10


def test_eval_command_reports_bad_rows_or_fails(tmp_path: Path, fake_models: dict[str, Any]) -> None:
    args = ["--task", "gsm8k", "--data", str(GSM), "--methods", "base", "--max-tokens", "40",
            "--no-plots"]
    result = invoke(*args, "--out", str(tmp_path / "a"))
    assert result.exit_code == 0
    for line_no in (5, 6, 7):
        assert f"gsm8k.jsonl:{line_no}: " in result.stderr
    with pytest.raises(Exception, match=r"gsm8k\.jsonl:5: not valid JSON"):
        invoke(*args, "--out", str(tmp_path / "b"), "--on-bad-row", "fail")


def test_eval_command_rejects_a_changed_setting(tmp_path: Path, fake_models: dict[str, Any]) -> None:
    args = ["--task", "gsm8k", "--data", str(GSM), "--methods", "base", "--limit", "1",
            "--no-plots", "--out", str(tmp_path)]
    assert invoke(*args, "--max-tokens", "40").exit_code == 0
    with pytest.raises(UsageError, match="max_tokens 40 → 30"):
        invoke(*args, "--max-tokens", "30")


def test_eval_help_lists_list_options() -> None:
    result = CliRunner().invoke(commands.eval_command, ["--help"])
    assert result.exit_code == 0
    for opt in ("--methods", "--gamma", "--alpha", "--limit", "--out", "--on-bad-row",
                "--max-tokens", "--base", "--guide", "--temperature"):
        assert opt in result.output
    assert "--method " not in result.output  # the single-method option is not offered


# --- --batch: many answers at once ----------------------------------------------------------------
STABLE = ("method", "setting", "item", "text", "prediction", "correct", "tokens", "interventions",
          "stop_reason", "alphas", "error")


def stable(records: list[dict[str, Any]]) -> dict[Any, tuple[Any, ...]]:
    return {record_key(r): tuple(r[k] for k in STABLE) for r in records}


@pytest.mark.parametrize("batch", [2, 4, 8])
def test_batched_eval_writes_the_records_of_one_at_a_time(tmp_path: Path, batch: int) -> None:
    one = RecordStore(tmp_path / "one")
    assert run(one, make_pair, batch=1) == 15
    many = RecordStore(tmp_path / "many")
    notes: list[str] = []
    assert run(many, make_pair, batch=batch, note=notes.append) == 15
    one.close()
    many.close()
    a = [json.loads(x) for x in lines(one.path)]
    b = [json.loads(x) for x in lines(many.path)]
    assert stable(a) == stable(b) and not notes


def test_batched_eval_interrupted_loses_at_most_the_answers_in_flight(tmp_path: Path) -> None:
    interrupt = Interrupt()
    written: list[dict[str, Any]] = []

    def after(record: dict[str, Any]) -> None:
        written.append(record)
        if len(written) == 7:
            interrupt.armed = True

    store = RecordStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(store, lambda: make_pair(interrupt), after=after, batch=4)
    store.close()
    assert len(lines(store.path)) == 7
    store2 = RecordStore(tmp_path)
    assert run(store2, make_pair, batch=4) == 8  # resuming: only what is missing, in any order
    store2.close()
    assert len({record_key(json.loads(x)) for x in lines(store2.path)}) == 15


def test_batched_eval_of_a_method_that_evaluates_by_itself_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every method batches today: nudging is made to evaluate by itself here."""
    monkeypatch.setitem(METHODS, "nudging", replace(METHODS["nudging"], driven=frozenset()))
    notes: list[str] = []
    items = load_items(GSM, "gsm8k")
    store = RecordStore(tmp_path)
    n = run_plan("gsm8k", items, [Setting("nudging", 0.4)], store, base_settings=SETTINGS,
                 load_pair=make_pair, batch=4, note=notes.append)
    assert n == len(items)
    assert len(notes) == 1 and "one answer at a time" in notes[0] and "nudging" in notes[0]


def test_batched_eval_of_nudging_batches_with_no_note(tmp_path: Path) -> None:
    notes: list[str] = []
    items = load_items(GSM, "gsm8k")
    store = RecordStore(tmp_path)
    n = run_plan("gsm8k", items, [Setting("nudging", 0.4)], store, base_settings=SETTINGS,
                 load_pair=make_pair, batch=4, note=notes.append)
    assert n == len(items) and notes == []
