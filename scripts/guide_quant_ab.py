"""Does the guide's quantisation still limit blendin at B = 8? (issue 17)

Requantises the default guide (SmolLM2 Q4_1, which has no repacked CPU kernel) to Q8_0 and Q4_0
(both have one) in a temporary folder, not shipped, and decodes ``bench --throughput``'s eight
greedy answers with ``blendin`` at B = 8 and B = 1 for each guide, beside ``base`` alone; prints
aggregate tokens/s and the B = 8 / B = 1 ratios.

    .venv/bin/python scripts/guide_quant_ab.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import llama_cpp

from blendin_local.bench.throughput import Rate, batched
from blendin_local.models import default_model, load_pair, resolve_model

TYPES = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}


def requantise(src: Path, folder: Path) -> dict[str, str]:
    params = llama_cpp.llama_model_quantize_default_params()
    params.allow_requantize = True
    out = {"Q4_1 (shipped)": str(src)}
    for name, ftype in TYPES.items():
        params.ftype = ftype
        dst = folder / f"guide-{name}.gguf"
        if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
            raise SystemExit(f"requantising to {name} failed")
        out[name] = str(dst)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()
    print("load before", os.getloadavg())
    rates: dict[tuple[str, int], Rate] = {}
    with tempfile.TemporaryDirectory() as tmp:
        guides = requantise(resolve_model(default_model("guide")), Path(tmp))
        for name, guide in guides.items():
            pair = load_pair(default_model("base"), guide, n_ctx=args.n_ctx,
                             n_threads=args.threads)
            runs = [("blendin", name)] + ([("base", "base alone")] if name.startswith("Q4_1") else [])
            for method, row in runs:
                for b in (8, 1):
                    batched(pair, method, b, args.max_tokens, rates.setdefault((row, b), Rate()))
    for row in ["base alone", *guides]:
        b1, b8 = rates[row, 1].per_s, rates[row, 8].per_s
        print(f"{row:16} B=1 {b1:5.1f}  B=8 {b8:5.1f} tok/s  B=8/B=1 {b8 / b1:.2f}")
    print("load after", os.getloadavg())


if __name__ == "__main__":
    main()
