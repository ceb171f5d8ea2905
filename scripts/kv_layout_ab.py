"""A/B of the multi-sequence KV layout (issue 17): per-stream vs unified KV, per role.

Loads the default pair once and, per round, decodes ``bench --throughput``'s eight greedy answers
at B = 1 (one sequence: both layouts are the same) and at ``--batch`` under each layout in
``--layouts`` (``BLENDIN_KV_UNIFIED`` values: ``none``, ``guide``, ``base,guide``), the order
reversed every other round; prints aggregate tokens/s and the B/B=1 ratios.

    .venv/bin/python scripts/kv_layout_ab.py --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

from blendin_local.bench.throughput import Rate, batched, raw_decode
from blendin_local.models import default_model, load_pair


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--layouts", default="none,guide,base+guide")
    parser.add_argument("--guide", default=None, help="guide GGUF (default: the default pair's)")
    args = parser.parse_args()
    pair = load_pair(default_model("base"), args.guide or default_model("guide"), n_ctx=args.n_ctx,
                     n_threads=args.threads)
    layouts = [layout.replace("+", ",") for layout in args.layouts.split(",")]
    rates: dict[tuple[str, str, int], Rate] = defaultdict(Rate)
    print(f"load before: {os.getloadavg()}", flush=True)
    runs: list[tuple[str, int]] = [("none", 1)] + [(layout, args.batch) for layout in layouts]
    for rnd in range(args.rounds):
        for layout, b in runs if rnd % 2 == 0 else runs[::-1]:
            os.environ["BLENDIN_KV_UNIFIED"] = layout
            if b == 1 or "base" in layout or layout == "none":
                raw_decode(pair, b, args.max_tokens, rates["raw", layout, b])
            for method in ("base", "blendin"):
                if method == "base" and b > 1 and "base" not in layout and layout != "none":
                    continue  # the base's layout is the same as under "none"
                batched(pair, method, b, args.max_tokens, rates[method, layout, b])
            print(f"round {rnd} {layout} B={b} done, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load after: {os.getloadavg()}")
    for (what, layout, b), rate in sorted(rates.items()):
        one = rates[what, "none", 1].per_s
        print(f"{what:8} unified={layout:11} B={b}: {rate.per_s:6.1f} tok/s "
              f"({rate.tokens} tokens, {rate.seconds:.1f} s), ×{rate.per_s / one:.2f} of B=1")


if __name__ == "__main__":
    main()
