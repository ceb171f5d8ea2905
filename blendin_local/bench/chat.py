"""``blendin-local bench --chat``: time to first token as a chat grows, with and without KV reuse.

A scripted 5-turn chat whose history reaches ~1 500 tokens by the last turn; each mode runs the
same turns on the same pair, one after the other (compare the ratios, not absolute seconds).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ..generation.generate import generate
from ..pair import ModelPair
from ..prompts import CHAT_SYSTEM, Message, chat_conversation
from ..settings import GenerationSettings

TURNS = 5
TARGET_RATIO = 1.5  # issue 11: TTFT of turn 5 ≤ 1.5 × turn 1's, with reuse

PARAGRAPH = (
    "Lighthouse keepers once lived on remote rocks for months at a time. They trimmed the wicks, "
    "wound the clockwork that turned the lens, logged the weather every few hours and rowed out "
    "to help sailors in trouble. Storms could cut them off from supplies for weeks, so they kept "
    "stores of flour, tea, salted meat and lamp oil, and they read, carved and painted to pass "
    "the long evenings. "
)


def user_message(turn: int) -> str:
    """About 280 Gemma tokens, different in every turn."""
    body = " ".join(f"Note {turn}.{part}: {PARAGRAPH}" for part in range(1, 4))
    return f"{body}\nQuestion {turn}: in one sentence, what is note {turn}.{turn % 3 + 1} about?"


def chat_ttft(pair: ModelPair, settings: GenerationSettings, *, reuse: bool) -> list[dict[str, Any]]:
    """Run the scripted chat; per turn: prompt tokens, reused tokens, TTFT and prefill seconds."""
    for engine in (pair.base, pair.guide, pair.anti):
        if engine is not None:
            engine.rollback(0)
    settings = replace(settings, reuse_cache=reuse)
    messages: list[Message] = []
    rows = []
    for turn in range(1, TURNS + 1):
        messages.append(Message("user", user_message(turn)))
        t0 = time.perf_counter()
        gen = generate(pair, chat_conversation(messages, CHAT_SYSTEM), settings)
        ttft = None
        for _ in gen:
            if ttft is None:
                ttft = time.perf_counter() - t0
        r = gen.result
        rows.append({"turn": turn, "prompt_tokens": r.prompt_tokens, "cached_tokens": gen.cached_tokens,
                     "ttft_s": round(ttft or 0.0, 4), "prefill_s": round(r.prefill_s, 4),
                     "reply_tokens": r.tokens})
        messages.append(Message("assistant", r.text))
    return rows


def run_chat_bench(pair: ModelPair, *, max_tokens: int, rounds: int) -> dict[str, Any]:
    """Both modes ``rounds`` times, alternating so that load drift hits both; per turn the fastest
    round counts (the least disturbed on a shared machine)."""
    settings = GenerationSettings(max_tokens=max_tokens)
    runs: dict[str, list[list[dict[str, Any]]]] = {"fresh": [], "reuse": []}
    for _ in range(rounds):
        for mode in runs:
            runs[mode].append(chat_ttft(pair, settings, reuse=mode == "reuse"))
    report: dict[str, Any] = {"turns": TURNS, "max_tokens": max_tokens, "rounds": rounds, "modes": {}}
    for mode, per_round in runs.items():
        rows = [dict(per_round[0][t], ttft_s=min(r[t]["ttft_s"] for r in per_round),
                     prefill_s=min(r[t]["prefill_s"] for r in per_round)) for t in range(TURNS)]
        report["modes"][mode] = {"rows": rows, "ratio": rows[-1]["ttft_s"] / rows[0]["ttft_s"]}
    ratio = report["modes"]["reuse"]["ratio"]
    report["target"] = {"metric": f"TTFT turn {TURNS} / turn 1 with reuse", "value": ratio,
                        "target": f"<= {TARGET_RATIO}", "ok": ratio <= TARGET_RATIO}
    return report


def print_chat_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for mode, data in report["modes"].items():
        t = Table(title=f"{mode} caches: time to first token per chat turn (replies ≤ "
                        f"{report['max_tokens']} tokens; fastest of {report['rounds']} rounds)")
        for col in ("turn", "prompt tokens", "reused", "TTFT s", "prefill s", "reply tokens"):
            t.add_column(col, justify="right")
        for r in data["rows"]:
            t.add_row(str(r["turn"]), str(r["prompt_tokens"]), str(r["cached_tokens"]),
                      f"{r['ttft_s']:.3f}", f"{r['prefill_s']:.3f}", str(r["reply_tokens"]))
        console.print(t)
        console.print(f"{mode}: TTFT turn {report['turns']} / turn 1 = {data['ratio']:.2f}")
    tgt = report["target"]
    mark = "[green]ok[/]" if tgt["ok"] else "[red]missed[/]"
    console.print(f"{tgt['metric']}: {tgt['value']:.2f} (target {tgt['target']}) {mark}")
