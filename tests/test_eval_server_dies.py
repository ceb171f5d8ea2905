"""``eval`` against a server that dies mid-run: one line and exit != 0, every finished record on
disk, and the same command with the server back answers only the missing items."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fakes.servers import completion_chunk, scripted_server, send_json, send_sse_head

SCRIPT = Path(sys.executable).with_name("blendin-local")
QUESTIONS = [f"What is {n} plus {n}?" for n in range(1, 5)]


@pytest.mark.parametrize("batch", ["1", "4"])
def test_eval_keeps_finished_records_when_the_server_dies_and_resumes(tmp_path, batch):
    """One answer at a time, and four in flight (which two the server answers is then up to the
    order their requests arrive in)."""
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": f"So #### {2 * n}"}) + "\n"
                            for n, q in enumerate(QUESTIONS, start=1)))
    state = {"alive": 2, "asked": []}  # answer this many completions requests, then fail
    lock = threading.Lock()

    def completions(h, body):
        with lock:
            state["asked"].append(body["prompt"])
            alive = state["alive"] > 0
            state["alive"] -= 1
        if not alive:
            send_json(h, 503, {"error": {"message": "the model process died"}})
            return
        send_sse_head(h)  # two tokens, then the end of the text (the server's EOS)
        h.wfile.write(completion_chunk([" 4"]).encode() + completion_chunk(["."], finish="stop").encode()
                      + b"data: [DONE]\n\n")

    handlers = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]}),
                "POST /v1/completions": completions}
    out = tmp_path / "run"
    with scripted_server(handlers) as (url, _):
        args = [str(SCRIPT), "eval", "--task", "gsm8k", "--data", str(data), "--methods", "base",
                "--base", f"{url}#m", "--out", str(out), "--no-plots", "--max-tokens", "8", "--batch", batch]
        died = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert died.returncode == 1 and "Traceback" not in died.stderr
        last = died.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "503" in last and \
            f"2 of 4 answers are saved in {out / 'records.jsonl'}" in last, died.stderr
        records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        saved = [r["question"] for r in records]
        if batch == "1":
            assert saved == QUESTIONS[:2]
        assert len(saved) == len(set(saved)) == 2 and set(saved) <= set(QUESTIONS)
        assert all(r["text"] == " 4." and r["error"] is None for r in records)
        with lock:  # the server is back
            state["alive"] = 10**6
            asked_before = len(state["asked"])
        resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    again = state["asked"][asked_before:]
    missing = [q for q in QUESTIONS if q not in saved]
    assert len(again) == 2 and sorted(q for q in missing for p in again if q in p) == sorted(missing)
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["question"] for r in records) == sorted(QUESTIONS)
    assert (out / "summary.csv").exists()
