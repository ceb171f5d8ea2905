"""Where an ``eval`` spends its time at ``--batch 1`` vs ``--batch N`` (issue 17).

Runs the eval's own ``run_plan`` in-process (models loaded once) over the first ``--items`` GSM8K
items of ``docs/eval/gsm8k-mini.jsonl`` (repeated, with fresh ids, to reach ``--items``) for the
given methods, once per batch size, alternating the order over ``--rounds``, and counts per model:
``llama_decode`` calls, tokens, ubatches (llama.cpp splits a multi-sequence batch into runs of
consecutive sequence ids with equal tokens each; with a unified KV one ubatch of up to n_ubatch
tokens: ``BLENDIN_KV_UNIFIED``), and seconds inside ``eval_many``.

    .venv/bin/python scripts/profile_eval_batch.py --items 8 --max-tokens 64 --batches 1,8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from blendin_local.engines.llama import LlamaSequences
from blendin_local.evaluation.datasets import load_items
from blendin_local.evaluation.records import RecordStore
from blendin_local.evaluation.runner import build_grid, run_plan
from blendin_local.models import default_model, load_pair
from blendin_local.settings import GenerationSettings

ROOT = Path(__file__).resolve().parent.parent


class Counters:
    """Per model: decodes, tokens, rows asked, ubatches, seconds in eval_many."""

    def __init__(self) -> None:
        self.by_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.calls: list[tuple[str, list[tuple[int, int]], float]] = []

    def install(self) -> Any:
        original = LlamaSequences.eval_many
        counters = self

        def counted(group: LlamaSequences, requests: Any, *, all_rows: bool = False) -> Any:
            before = group.decodes
            work = sorted((v.seq, len(ids)) for v, ids in requests if len(ids))
            t0 = time.perf_counter()
            out = original(group, requests, all_rows=all_rows)
            c = counters.by_model[group.engine.name]
            c["seconds"] += time.perf_counter() - t0
            c["calls"] += 1
            c["decodes"] += group.decodes - before
            c["tokens"] += sum(n for _, n in work)
            c["seqs"] += len(work)
            c["ubatches"] += (ubatches(work, group.n_batch) if not group.unified_kv
                              else -(-sum(n for _, n in work) // group.n_batch))
            counters.calls.append((group.engine.name, work,
                                   time.perf_counter() - t0))
            return out

        LlamaSequences.eval_many = counted  # type: ignore[method-assign]
        return original


def ubatches(work: list[tuple[int, int]], n_ubatch: int) -> int:
    """How many ubatches llama.cpp's ``split_equal(sequential=True)`` makes of a batch of
    (seq id, token count) in seq order (as ``eval_many`` sends them): one per run of consecutive
    ids, and more where their token counts differ."""
    left = [[seq, n] for seq, n in work]
    count = 0
    while any(n for _, n in left):
        chosen: list[list[int]] = []
        for item in left:
            if item[1] and (not chosen or item[0] == chosen[-1][0] + 1):
                chosen.append(item)
        take = min(n for _, n in chosen)
        take = min(take, max(1, n_ubatch // len(chosen)))
        for item in chosen:
            item[1] -= take
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--methods", default="base,blendin")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()
    items = load_items(ROOT / "docs/eval/gsm8k-mini.jsonl", "gsm8k")
    items = [replace(items[i % len(items)], id=f"{items[i % len(items)].id}-{i}")
             for i in range(args.items)]
    grid = build_grid(args.methods.split(","), [0.4], [None])
    pair = load_pair(default_model("base"), default_model("guide"), n_ctx=args.n_ctx,
                     n_threads=args.threads)
    settings = GenerationSettings(method="blendin", gamma=0.4, max_tokens=args.max_tokens)
    counters = Counters()
    counters.install()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"load before: {os.getloadavg()}", flush=True)
    totals: dict[int, list[float]] = defaultdict(list)
    texts: dict[int, dict[tuple[str, str], str]] = {}
    for rnd in range(args.rounds):
        for batch in (batches if rnd % 2 == 0 else batches[::-1]):
            counters.by_model.clear()
            with tempfile.TemporaryDirectory() as tmp:
                store = RecordStore(Path(tmp))
                records: list[dict[str, Any]] = []
                t0 = time.perf_counter()
                run_plan("gsm8k", items, grid, store, base_settings=settings,
                         load_pair=lambda: pair, batch=batch, after=records.append)
                wall = time.perf_counter() - t0
                store.close()
            tokens = sum(int(r["tokens"]) for r in records)
            texts[batch] = {(r["method"], r["item"]): r["text"] for r in records}
            totals[batch].append(wall)
            print(f"round {rnd} batch {batch}: {wall:.1f} s, {len(records)} answers, {tokens} tokens, "
                  f"load {os.getloadavg()[0]:.2f}")
            for name, c in counters.by_model.items():
                print(f"  {name}: {c['seconds']:.1f} s in {int(c['calls'])} eval_many, "
                      f"{int(c['decodes'])} decodes, {int(c['ubatches'])} ubatches, "
                      f"{int(c['tokens'])} tokens ({c['tokens'] / max(c['ubatches'], 1):.1f}/ubatch), "
                      f"{int(c['seqs'])} sequence-requests")
    if os.environ.get("CALLS"):
        for call in counters.calls:
            print("call", *call)
    print(f"load after: {os.getloadavg()}")
    for batch, walls in totals.items():
        print(f"batch {batch}: wall {sum(walls):.1f} s over {len(walls)} runs")
    first, *others = texts
    for other in others:
        for method in args.methods.split(","):
            keys = [k for k in texts[first] if k[0] == method]
            differ = sum(texts[first][k] != texts[other].get(k) for k in keys)
            print(f"{method}: {differ} of {len(keys)} answers differ between batch {first} and {other}")


if __name__ == "__main__":
    main()
