"""Answers in flight against a server: ``eval --batch 8`` vs ``--batch 1`` over llama-server.

Starts llama.cpp's ``llama-server`` with ``-np 8`` holding the default base (Gemma-3-270M), runs
``blendin-local eval`` (BlendIn top-100, the default local guide) on the first ``--limit`` GSM8K
items once per batch size into fresh folders, and prints wall seconds, generated tokens per second,
the throughput ratio, whether both runs gave the same texts, and the load average before and after.

    BLENDIN_LLAMA_SERVER=... python scripts/bench_remote_batch.py --limit 12 --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from blendin_local.engines.remote.native_server import find_llama_server, llama_server
from blendin_local.models import load_catalog

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("blendin-local")


def run_eval(url: str, out: Path, batch: int, args: argparse.Namespace) -> tuple[float, list[dict]]:
    argv = [str(SCRIPT), "eval", "--task", "gsm8k", "--data", str(args.data), "--limit", str(args.limit),
            "--methods", "blendin", "--gamma", str(args.gamma), "--support", "top100",
            "--base", f"{url}#gemma3-270m", "--max-tokens", str(args.max_tokens),
            "--batch", str(batch), "--out", str(out), "--no-plots"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"eval --batch {batch} failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    return seconds, sorted(records, key=lambda r: r["item"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT / "docs/eval/gsm8k-mini.jsonl")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--gamma", type=float, default=0.4)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    entries, default = load_catalog()
    base = entries[default["base"]].path
    print(f"load before: {os.getloadavg()}", flush=True)
    with llama_server(find_llama_server(), base, "gemma3-270m", n_ctx=1024,
                      parallel=args.batch) as url, tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for batch in (args.batch, 1):
            seconds, records = run_eval(url, Path(tmp) / f"b{batch}", batch, args)
            tokens = sum(int(r["tokens"]) for r in records)
            rows[batch] = (seconds, tokens, records)
            print(f"--batch {batch}: {len(records)} answers, {tokens} tokens in {seconds:.1f} s "
                  f"= {tokens / seconds:.1f} tok/s (whole command, model loading included); "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    (s1, t1, r1), (sb, tb, rb) = rows[1], rows[args.batch]
    same = [a["text"] == b["text"] for a, b in zip(r1, rb, strict=True)]
    print(f"throughput ratio (tok/s, batch {args.batch} / batch 1): {(tb / sb) / (t1 / s1):.2f}x; "
          f"wall ratio {s1 / sb:.2f}x; same text in {sum(same)} of {len(same)} answers")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
