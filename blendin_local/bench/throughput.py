"""``blendin-local bench --throughput``: aggregate tokens/s of many answers at once (issue 17).

The same eight greedy answers are decoded at B = 1, 4, 8 (``generate_many``) for ``base`` and
``blendin``, beside the limit: a bare argmax loop over the base's multi-sequence engine doing the same
work (prompts, then one token per sequence per ``llama_decode``). Also today's one-answer path
(``generate`` per conversation), and the anchor: llama.cpp's own ``llama-server -np 1`` vs ``-np 8``
holding the base (:mod:`.anchor`). Every configuration runs once per round, in reverse order every
other round, so that the machine's drift hits all alike; only ratios of one run are compared.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines.base import group_of, sequences_of
from ..generation.generate import generate
from ..generation.many import generate_many, unified_kv
from ..pair import ModelPair
from ..prompts import Conversation
from ..settings import GenerationSettings
from .anchor import SLOTS, Anchor, run_anchor

PROMPTS = (
    "The history of the Roman Empire begins",
    "Photosynthesis is the process by which",
    "Here is a short story about a lighthouse keeper:",
    "The three laws of thermodynamics state that",
    "A good recipe for bread starts with",
    "In computer science, a hash table is",
    "The city of Lisbon is known for",
    "To learn a new language quickly, you should",
)
BATCHES = (1, 4, 8)
ANCHOR_ROW = "llama-server -np B (8 clients)"
METHODS = ("base", "blendin")


@dataclass
class Rate:
    tokens: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _convs() -> list[Conversation]:
    return [Conversation.single(p, chat=False) for p in PROMPTS]


def _settings(method: str, max_tokens: int) -> GenerationSettings:
    return GenerationSettings(method=method, gamma=0.4, max_tokens=max_tokens)


def raw_decode(pair: ModelPair, batch: int, max_tokens: int, rate: Rate) -> None:
    """The limit: the same prompts and token count, a bare argmax loop, ``batch`` sequences per
    decode (continuous: a sequence done at ``max_tokens`` hands its slot to the next prompt)."""
    base = pair.base
    assert base is not None
    views = sequences_of(base, batch, unified_kv=unified_kv("base"))
    assert views is not None, "the base has no multi-sequence context"
    group = group_of(views[0])
    assert group is not None
    prompts = [base.tokenize(p.encode(), add_bos=base.add_bos) for p in PROMPTS]
    t0 = time.perf_counter()
    waiting = list(range(len(prompts)))
    active: dict[int, int] = {}  # slot -> tokens made
    requests = []
    for slot, view in enumerate(views):
        if waiting:
            view.rollback(0)
            requests.append((view, prompts[waiting.pop(0)]))
            active[slot] = 0
    made = 0
    while requests:
        group.eval_many(requests)
        requests = []
        for slot in list(active):
            view = views[slot]
            token = int(np.argmax(view.logits()))
            active[slot] += 1
            made += 1
            if active[slot] < max_tokens:
                requests.append((view, [token]))
            else:
                del active[slot]
                if waiting:
                    view.rollback(0)
                    requests.append((view, prompts[waiting.pop(0)]))
                    active[slot] = 0
    rate.seconds += time.perf_counter() - t0
    rate.tokens += made


def batched(pair: ModelPair, method: str, batch: int, max_tokens: int, rate: Rate) -> tuple[int, bool]:
    """``generate_many`` at ``batch``; returns the interventions, and whether the guide caught
    up beside the base (``generation.overlap``)."""
    many = generate_many(pair, _convs(), _settings(method, max_tokens), batch=batch)
    t0 = time.perf_counter()
    results = many.run()
    rate.seconds += time.perf_counter() - t0
    rate.tokens += sum(r.tokens for r in results)
    return sum(r.interventions for r in results), many.overlapped


def one_at_a_time(pair: ModelPair, method: str, max_tokens: int, rate: Rate) -> bool:
    """Today's one-answer path: ``generate`` per conversation on the pair's own engines; returns
    whether the guide caught up beside the base."""
    t0 = time.perf_counter()
    overlapped = False
    for conv in _convs():
        gen = generate(pair, conv, _settings(method, max_tokens))
        rate.tokens += gen.run().tokens
        overlapped = gen.overlapped
    rate.seconds += time.perf_counter() - t0
    return overlapped


def run_throughput(pair: ModelPair, *, max_tokens: int, rounds: int,
                   anchor: Anchor | None = None) -> dict[str, Any]:
    """The report; with ``anchor``, llama-server's row too (after the in-process runs, so that
    its server never shares the cores with them)."""
    raw = {b: Rate() for b in BATCHES}
    many = {(m, b): Rate() for m in METHODS for b in BATCHES}
    single = {m: Rate() for m in METHODS}
    interventions = {m: 0 for m in METHODS}
    beside = {"batched": False, "one-answer path": False}  # the guide beside the base, blendin
    rss_b8 = 0.0
    for r in range(rounds):
        # Odd rounds run the configurations in reverse order, so that a drift of the machine's
        # load over the run does not favour the ones that come first.
        order: list[int | None] = [None, *BATCHES]  # None: the one-answer path
        for b in order if r % 2 == 0 else order[::-1]:
            if b is None:
                for m in METHODS:
                    overlapped = one_at_a_time(pair, m, max_tokens, single[m])
                    beside["one-answer path"] |= m == "blendin" and overlapped
                continue
            raw_decode(pair, b, max_tokens, raw[b])
            for m in METHODS:
                n, overlapped = batched(pair, m, b, max_tokens, many[m, b])
                beside["batched"] |= m == "blendin" and overlapped
                if b == 1:
                    interventions[m] += n
            if b == max(BATCHES):
                rss_b8 = max(rss_b8, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
    hi, lo = max(BATCHES), min(BATCHES)
    raw_ratio = raw[hi].per_s / raw[lo].per_s
    targets = [
        (f"raw batched decode B={hi}/B={lo}", raw_ratio, "", None),
        (f"base B={hi}/B={lo} ÷ raw ratio",
         many["base", hi].per_s / many["base", lo].per_s / raw_ratio, ">=", 0.8),
        (f"blendin B={hi}/B={lo} ÷ raw ratio",
         many["blendin", hi].per_s / many["blendin", lo].per_s / raw_ratio, ">=", 0.7),
        ("base B=1 / one-answer path", many["base", 1].per_s / single["base"].per_s, ">=", 0.95),
        ("blendin B=1 / one-answer path",
         many["blendin", 1].per_s / single["blendin"].per_s, ">=", 0.95),
        (f"peak RSS at B={hi} (GB)", rss_b8, "", None),
    ]
    rates = {
        "raw": {str(b): round(raw[b].per_s, 2) for b in BATCHES},
        **{m: {str(b): round(many[m, b].per_s, 2) for b in BATCHES} for m in METHODS},
        **{f"{m} one-answer path": {"1": round(single[m].per_s, 2)} for m in METHODS},
    }
    server = None if anchor is None else run_anchor(anchor, PROMPTS, max_tokens=max_tokens,
                                                     rounds=rounds)
    if server is not None and "tokens_per_s" in server:
        by_np = server["tokens_per_s"]
        rates[ANCHOR_ROW] = by_np
        np_hi, np_lo = str(max(SLOTS)), str(min(SLOTS))
        server_ratio = by_np[np_hi] / by_np[np_lo]
        targets += [(f"llama-server -np {np_hi}/-np {np_lo}", server_ratio, "", None)] + [
            (f"{m} B={hi}/B={lo} ÷ llama-server's", many[m, hi].per_s / many[m, lo].per_s
             / server_ratio, ">=", 1.0) for m in METHODS]
    return {
        "tokens_per_s": rates,
        "llama_server": server,
        "targets": [{"metric": name, "value": round(v, 4), "target": f"{op} {t}" if op else "",
                     "ok": None if t is None else bool(v >= t)} for name, v, op, t in targets],
        "guide_beside_base": beside,
        "blendin_intervention_rate": round(
            interventions["blendin"] / max(many["blendin", 1].tokens, 1), 3),
        "answers": len(PROMPTS), "max_tokens": max_tokens, "rounds": rounds,
    }


def print_throughput(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"aggregate tokens/s, {report['answers']} greedy answers of ≤{report['max_tokens']} "
                    f"tokens × {report['rounds']} rounds (prompt processing included)")
    t.add_column("run")
    for b in BATCHES:
        t.add_column(f"B={b}", justify="right")
    for name, by_b in report["tokens_per_s"].items():
        t.add_row(name, *[f"{by_b[str(b)]:.1f}" if str(b) in by_b else "" for b in BATCHES])
    console.print(t)
    t2 = Table(title="targets (issue 17)")
    for col in ("metric", "value", "target", ""):
        t2.add_column(col)
    for row in report["targets"]:
        ok = "" if row["ok"] is None else "[green]ok[/]" if row["ok"] else "[red]missed[/]"
        t2.add_row(row["metric"], f"{row['value']:.3f}", row["target"], ok)
    console.print(t2)
    console.print(f"blendin intervention rate: {100 * report['blendin_intervention_rate']:.0f}%")
    beside = report.get("guide_beside_base", {})
    console.print("the guide's catch-ups beside the base's decode (BLENDIN_OVERLAP): "
                  + ", ".join(f"{path} {'yes' if on else 'no'}" for path, on in beside.items()))
    server = report.get("llama_server")
    if server is None:
        console.print("llama-server anchor: not run (--no-anchor)")
    elif "not_run" in server:
        console.print(f"llama-server anchor: not run: {server['not_run']}", markup=False,
                      soft_wrap=True)
