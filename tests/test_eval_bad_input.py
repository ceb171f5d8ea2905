"""The bad-input battery (issue 9) for ``eval`` and ``diagnose``, through ``main()`` on the scripted
fake pair: one line on stderr, a non-zero exit, no traceback, nothing of the user's lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import assert_ends_with_error, assert_one_line_error, run_main
from test_eval_runner import GSM, Q, make_pair

from blendin_local.commands import diagnose
from blendin_local.commands import eval as commands

from fakes.scripted import capital_pair


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "pair_from_options", lambda opts, methods: make_pair())


@pytest.fixture
def fake_diagnose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose, "pair_from_options", lambda opts, methods: capital_pair())


def eval_args(out: Path, *more: str) -> list[str]:
    return ["eval", "--task", "gsm8k", "--data", str(GSM), "--max-tokens", "40",
            "--out", str(out), *more]


# --- 4: plots at 0 % and 100 % ------------------------------------------------------------------
@pytest.mark.parametrize("gold, expect", [
    # 0/3 gave a Wilson low of 5.55e-17 > 0: a negative error bar, and matplotlib refused it.
    ({"pens": 5, "bike": 1300, "cat": 25}, {"base": 0, "guide": 2}),
    ({"pens": 5}, {"base": 0, "guide": 1}),  # 0 % and 100 %
])
def test_plots_at_zero_and_full_accuracy(gold: dict[str, int], expect: dict[str, int],
                                         tmp_path: Path, fake_models: None) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"question": Q[k], "answer": f"#### {v}"}) + "\n"
                            for k, v in gold.items()))
    out = tmp_path / "run"
    proc = run_main("eval", "--task", "gsm8k", "--data", str(data), "--max-tokens", "40",
                    "--methods", "base,guide,blendin", "--gamma", "0,0.4", "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    records = [json.loads(ln) for ln in (out / "records.jsonl").read_text().splitlines()]
    for method, right in expect.items():
        assert sum(r["correct"] for r in records if r["method"] == method) == right, method
    # γ = 0 never opens the gate: blendin's points (with error bars) sit at the base's 0 %.
    assert not any(r["correct"] for r in records if r["setting"].startswith("gamma=0,"))
    for name in ("accuracy_vs_gamma", "accuracy_vs_rate", "alpha_hist", "overlap_correct_wrong"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name


# --- 1: invalid UTF-8 in a data file ------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "diagnose"])
def test_non_utf8_data_file(command: str, tmp_path: Path, fake_models: None) -> None:
    data = tmp_path / "d.jsonl"
    content = b'{"question": "ok", "answer": "#### 5"}\n{"question": "\xff"}\n'
    data.write_bytes(content)
    args = (eval_args(tmp_path / "run", "--methods", "base") if command == "eval"
            else ["diagnose", "--task", "gsm8k", "--data", str(GSM)])
    args[args.index(str(GSM))] = str(data)
    proc = run_main(*args)
    offset = content.index(b"\xff")
    assert_one_line_error(proc, f"--data: <path> is not valid UTF-8 (bad byte at offset {offset})",
                          path=data)


# --- 3: an --out that cannot be written ----------------------------------------------------------
def unwritable_dirs(tmp_path: Path) -> list[Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    return [a_file / "run", Path("/sys/blendin-local-test-run"), Path("/dev/full/run")]


def test_eval_out_that_cannot_be_created(tmp_path: Path, fake_models: None) -> None:
    for out in unwritable_dirs(tmp_path):
        proc = run_main(*eval_args(out, "--methods", "base", "--limit", "1"))
        assert_one_line_error(proc, "--out: cannot create", path=out)
    assert (tmp_path / "a-file").read_text() == "mine\n"


def test_eval_summary_that_cannot_be_written(tmp_path: Path, fake_models: None) -> None:
    out = tmp_path / "run"
    (out / "summary.csv").mkdir(parents=True)  # in the way of the summary
    proc = run_main(*eval_args(out, "--methods", "base", "--limit", "1", "--no-plots"))
    assert_ends_with_error(proc, f"--out: cannot write {out / 'summary.csv'}: Is a directory")
    assert "95% CI" in proc.stdout  # the table was shown
    assert len((out / "records.jsonl").read_text().splitlines()) == 1  # the answers are kept


# --- 10: never delete a user's line -------------------------------------------------------------
def test_damaged_records_are_moved_aside_not_deleted(tmp_path: Path, fake_models: None) -> None:
    out = tmp_path / "run"
    args = eval_args(out, "--methods", "base", "--limit", "3", "--no-plots")
    assert run_main(*args).returncode == 0
    records = out / "records.jsonl"
    lines = records.read_text().splitlines()
    records.write_text(f"{lines[0]}\nmy note, not JSON\n{lines[1]}\n{lines[2][:30]}")
    proc = run_main(*args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "records.jsonl:2: damaged record moved to records.damaged.jsonl" in proc.stderr
    assert "records.jsonl:4: half-written last record moved" in proc.stderr
    assert (out / "records.damaged.jsonl").read_text() == f"my note, not JSON\n{lines[2][:30]}\n"
    assert len(records.read_text().splitlines()) == 3  # the cut item ran again


FOREIGN = '{"id": 1, "label": "cat"}\n{"id": 2, "label": "dog"}\nnot json\n'


@pytest.mark.parametrize("manifest", [None, '{"experiment": "theirs"}\n'])
def test_someone_elses_records_are_refused_untouched(manifest: str | None, tmp_path: Path,
                                                      fake_models: None) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "records.jsonl").write_text(FOREIGN)
    if manifest is not None:
        (out / "run.json").write_text(manifest)
    before = sorted(p.name for p in out.iterdir())
    proc = run_main(*eval_args(out, "--methods", "base", "--limit", "1"))
    assert_one_line_error(proc, "use another --out directory")
    assert (out / "records.jsonl").read_text() == FOREIGN
    if manifest is not None:
        assert (out / "run.json").read_text() == manifest
    assert sorted(p.name for p in out.iterdir()) == before


# --- 11: settings of reused records -------------------------------------------------------------
@pytest.mark.parametrize("damage", ["delete", "garbage", "not an object", "settings left out"])
def test_records_without_a_readable_run_json_are_not_reused(damage: str, tmp_path: Path,
                                                            fake_models: None) -> None:
    out = tmp_path / "run"
    first = eval_args(out, "--methods", "base", "--limit", "2", "--no-plots")
    assert run_main(*first).returncode == 0
    manifest = out / "run.json"
    if damage == "delete":
        manifest.unlink()
    elif damage == "garbage":
        manifest.write_bytes(b"\xff{")
    elif damage == "not an object":
        manifest.write_text("[]")
    else:
        kept = json.loads(manifest.read_text())
        del kept["max_tokens"]
        manifest.write_text(json.dumps(kept))
    left = manifest.read_bytes() if manifest.exists() else None
    records = (out / "records.jsonl").read_text()
    proc = run_main(*[a if a != "40" else "16" for a in first])  # --max-tokens 40 -> 16
    assert_one_line_error(proc, "use another --out directory")
    assert (out / "records.jsonl").read_text() == records
    assert (manifest.read_bytes() if manifest.exists() else None) == left


# --- 8: diagnose --figure that cannot be written -------------------------------------------------
@pytest.mark.parametrize("as_json", [False, True])
def test_diagnose_report_survives_an_unwritable_figure(as_json: bool, tmp_path: Path,
                                                       fake_diagnose: None) -> None:
    for fig in [d / "diag.png" for d in unwritable_dirs(tmp_path)]:
        proc = run_main("diagnose", "--limit", "2", "--max-tokens", "12", "--figure", str(fig),
                        *(["--json"] if as_json else []))
        assert_one_line_error(proc, "--figure: cannot", stdout_empty=False)
        if as_json:
            assert json.loads(proc.stdout)["prompts"] == 2
        else:
            assert "verdict: " in proc.stdout
        assert not fig.exists()


# --- issue 16, item 6: γ lists and token counts, checked by the limits table ------------------------
GAMMA_MUST = "--gamma must be a number >= 0 (> 1: always intervene), got"


@pytest.mark.parametrize("gammas, message", [
    ("0.2,x", f"{GAMMA_MUST} 'x'"),
    ("0.2,-1", f"{GAMMA_MUST} '-1'"),
    ("nan", f"{GAMMA_MUST} 'nan'"),
    ("0.4,inf", "--gamma values must be finite (any γ > 1 always intervenes), got '0.4,inf'"),
    (" , ", "--gamma must be a comma-separated list, got ' , '"),
])
def test_eval_gamma_list_in_one_line(gammas: str, message: str, tmp_path: Path,
                                     fake_models: None) -> None:
    proc = run_main(*eval_args(tmp_path / "run", "--methods", "blendin", "--gamma", gammas))
    assert_one_line_error(proc, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--gamma", "-0.1"], f"{GAMMA_MUST} '-0.1'"),
    (["--gamma", "abc"], f"{GAMMA_MUST} 'abc'"),
    (["--gammas", "0.1,x"], "--gammas must be a number >= 0 (> 1: always intervene), got 'x'"),
    (["--max-tokens", "0"], "--max-tokens must be an integer >= 1, got '0'"),
    (["--max-tokens", "4.0"], "--max-tokens must be an integer >= 1, got '4.0'"),
])
def test_diagnose_values_in_one_line(args: list[str], message: str, tmp_path: Path,
                                     fake_diagnose: None) -> None:
    proc = run_main("diagnose", "--limit", "2", *args, "--figure", str(tmp_path / "d.png"))
    assert_one_line_error(proc, message)
    assert not (tmp_path / "d.png").exists()


def test_diagnose_takes_a_gamma_above_one_as_generate_does(tmp_path: Path,
                                                           fake_diagnose: None) -> None:
    proc = run_main("diagnose", "--limit", "2", "--max-tokens", "12", "--gamma", "1.5", "--json",
                    "--figure", str(tmp_path / "d.png"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gamma"] == 1.5


# --- --batch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_eval_bad_batch_is_one_line(value: str, tmp_path: Path, fake_models: None) -> None:
    proc = run_main(*eval_args(tmp_path / "run", "--batch", value))
    assert_one_line_error(proc, "--batch must be an integer >= 1", value)
    assert not (tmp_path / "run").exists()


def test_eval_batch_runs_and_resumes(tmp_path: Path, fake_models: None) -> None:
    out = tmp_path / "run"
    proc = run_main(*eval_args(out, "--methods", "base,blendin", "--limit", "3", "--batch", "3",
                               "--no-plots"))
    assert proc.returncode == 0, proc.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 6
