"""Per-stream vs unified KV at longer contexts (issue 17): B sequences of the default pair's models,
each with a P-token prompt (random ids), then 32 greedy decode steps of all B together; decode
tokens/s per layout, two rounds in alternating order. With a unified buffer every token's attention
covers all sequences' cells (llama-cpp-python leaves flash attention off), so it loses as contexts
grow; see README, *KV layout*.

    .venv/bin/python scripts/kv_layout_long_context.py --prompt-tokens 300 900
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blendin_local.engines.llama import LlamaEngine
from blendin_local.models import default_model, load_engine

STEPS = 32


def decode_rate(engine: LlamaEngine, prompts: list[list[int]], unified: bool) -> float:
    views = engine.sequences(len(prompts), unified_kv=unified)
    group = views[0].group
    group.eval_many(list(zip(views, prompts, strict=True)))
    t0 = time.perf_counter()
    for _ in range(STEPS):
        group.eval_many([(v, [int(np.argmax(v.logits()))]) for v in views])
    rate = len(prompts) * STEPS / (time.perf_counter() - t0)
    engine.sequences(1)  # drop this context before the next layout's
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[300, 900])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for p in args.prompt_tokens:
        for role in ("base", "guide"):
            engine = load_engine(default_model(role), n_ctx=p + STEPS + 8, n_threads=args.threads)
            rng = np.random.default_rng(0)
            prompts = [[int(t) for t in rng.integers(100, 20000, p)] for _ in range(args.batch)]
            rates: dict[bool, list[float]] = {False: [], True: []}
            for order in ((False, True), (True, False)):
                for unified in order:
                    rates[unified].append(decode_rate(engine, prompts, unified))
            engine.close()
            print(f"{role} P={p} B={args.batch}: per-stream "
                  f"{' '.join(f'{r:.1f}' for r in rates[False])}, unified "
                  f"{' '.join(f'{r:.1f}' for r in rates[True])} tok/s", flush=True)


if __name__ == "__main__":
    main()
