"""Where greedy answers part between one answer at a time and a batch (issue 17, spec §9, §11).

Answers the eval's GSM8K prompts (``docs/eval/gsm8k-mini.jsonl``, repeated to ``--items`` as the
eval profile does) with ``generate_many`` at ``--batch 1`` and ``--batch N``, records every step,
and for each answer whose text differs prints the first step where the tokens part, with what
decided that step in each run: whether the guide spoke (the γ gate), the base's top-1 probability
b and its distance to γ, and the top-2 gap of the distribution the token was taken from. A
difference "starts at a near-tie" when that gap is below ``--eps`` in either run, or when the gate
itself flipped (the guide spoke in one run only) with |b − γ| below ``--gate-eps``.

    .venv/bin/python scripts/batch_divergence.py --items 40 --max-tokens 128 --threads 1
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from blendin_local.evaluation.datasets import load_items
from blendin_local.generation.many import generate_many
from blendin_local.generation.steps import Step
from blendin_local.models import default_model, load_pair
from blendin_local.prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from blendin_local.settings import GenerationSettings

ROOT = Path(__file__).resolve().parent.parent


def answers(pair, convs, settings, batch: int) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in convs]
    for index, step in generate_many(pair, convs, settings, batch=batch):
        steps[index].append(step)
    return steps


def gap(step: Step) -> float:
    """Top-2 gap of the distribution the step's token was taken from (its final distribution)."""
    top = step.top
    return top[0].prob - top[1].prob if len(top) > 1 else 1.0


def describe(step: Step, gamma: float) -> str:
    b = step.b if step.b is not None else float("nan")
    return (f"guide {'spoke' if step.intervened else 'silent'}, b {b:.3f} (|b-γ| {abs(b - gamma):.3f}), "
            f"top-2 gap {gap(step):.4f}, token {step.token} {step.piece!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--method", default="blendin")
    parser.add_argument("--gamma", type=float, default=0.4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--gate-eps", type=float, default=0.05)
    args = parser.parse_args()
    items = load_items(ROOT / "docs/eval/gsm8k-mini.jsonl", "gsm8k")
    items = [items[i % len(items)] for i in range(args.items)]
    convs = [Conversation.single(it.prompt, system=REFERENCE_SYSTEM, plain=QA_FORMAT) for it in items]
    settings = GenerationSettings(method=args.method, gamma=args.gamma, max_tokens=args.max_tokens,
                                  final_top=2)
    pair = load_pair(default_model("base"), default_model("guide"), n_ctx=args.n_ctx,
                     n_threads=args.threads)
    print(f"load before: {os.getloadavg()}", flush=True)
    alone = answers(pair, convs, settings, 1)
    batched = answers(pair, convs, settings, args.batch)
    print(f"load after: {os.getloadavg()}", flush=True)
    differ = near = 0
    for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
        if [s.token for s in a] == [s.token for s in b]:
            continue
        differ += 1
        pairs = enumerate(zip(a, b, strict=False))
        t = next((k for k, (x, y) in pairs if x.token != y.token), min(len(a), len(b)))
        if t >= min(len(a), len(b)):
            print(f"answer {i}: one run ended at step {t}, the other went on")
            continue
        x, y = a[t], b[t]
        gate_flip = x.intervened != y.intervened
        bs = [s.b for s in (x, y) if s.b is not None]
        is_near = (min(gap(x), gap(y)) < args.eps
                   or (gate_flip and bool(bs) and min(abs(v - args.gamma) for v in bs) < args.gate_eps))
        near += is_near
        print(f"answer {i} parts at step {t} ({'near-tie' if is_near else 'NOT a near-tie'}):\n"
              f"  batch 1: {describe(x, args.gamma)}\n  batch {args.batch}: {describe(y, args.gamma)}")
    print(f"{args.method}: {differ} of {len(convs)} answers differ between batch 1 and "
          f"{args.batch}; {near} of them start at a near-tie (top-2 gap < {args.eps}, or the gate "
          f"flipping with |b-γ| < {args.gate_eps})")


if __name__ == "__main__":
    main()
