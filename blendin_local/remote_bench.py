"""``blendin-local bench`` with the base on a server: our chunked loop (one base request per confident
run of up to K tokens) against the reference's per-token loop (one request per model per token, the
whole text re-sent), side by side in one run on the same servers and GSM8K-style questions, BlendIn
with the paper's top-100 string blend at γ = 0.4, greedy (issue 10's targets).

``--remote-native`` starts llama.cpp's ``llama-server`` on free loopback ports for the run (the base,
or the whole pair) and stops it after: a server whose logprobs are cheap, as vLLM's are on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from .engines import is_remote
from .engines.remote import Traffic
from .generate import generate
from .pair import ModelPair, prompt_for
from .prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from .settings import GenerationSettings
from .steps import Result

GAMMA = 0.4
CLIENT_MS_TARGET = 2.0
SPEEDUP_TARGET = 2.0
SPEEDUP_BELOW_RATE = 0.15

# Grade-school word problems in GSM8K's style (written for this bench, not taken from the data set).
QUESTIONS = (
    "A baker makes 24 muffins in the morning and 18 in the afternoon. He sells 30 of them. "
    "How many muffins are left?",
    "Tom reads 12 pages of his book every day. How many days does he need to read a 96-page book?",
    "A train travels at 60 km per hour for 3 hours, then at 40 km per hour for 2 hours. "
    "How far does it travel in total?",
    "Sara buys 3 notebooks at $4 each and a pen for $2. She pays with a $20 bill. "
    "How much change does she get?",
    "A garden has 5 rows of 8 tomato plants, and each plant gives 6 tomatoes. "
    "How many tomatoes does the garden give?",
    "Lena saves $15 every week. How many weeks does it take her to save $180?",
)


@dataclass
class LoopRun:
    """One loop's totals over every answer."""

    name: str
    chunk: int
    tokens: int = 0
    interventions: int = 0
    seconds: float = 0.0  # decode time: a local guide's prompt processing excluded
    client_s: float = 0.0
    base_wait_s: float = 0.0  # blocked on the base server (its compute, the network, HTTP)
    bytes_received: int = 0
    base_requests: int = 0
    base_bound: int = 0  # sum over answers of interventions + ceil(tokens / K) + 1
    base_over: int = 0  # answers whose base requests exceeded their bound
    guide_requests: int | None = None  # None: a local guide
    guide_over: int = 0
    texts: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.interventions / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_ms_per_token(self) -> float:
        return 1000 * self.client_s / self.tokens if self.tokens else 0.0

    def add(self, r: Result) -> None:
        remote = r.remote or {}
        base, guide = remote.get("base", {}), remote.get("guide")
        self.tokens += r.tokens
        self.interventions += r.interventions
        self.seconds += r.seconds - r.prefill_s
        self.client_s += float(remote.get("client_ms_per_token", 0.0)) * r.tokens / 1000
        bound = r.interventions + math.ceil(r.tokens / self.chunk) + 1
        self.base_requests += int(base.get("requests", 0))
        self.base_wait_s += float(base.get("seconds", 0.0))
        self.base_bound += bound
        self.base_over += int(base.get("requests", 0)) > bound
        self.bytes_received += int(base.get("bytes_received", 0))
        if guide is not None:
            self.guide_requests = (self.guide_requests or 0) + int(guide["requests"])
            self.guide_over += int(guide["requests"]) > r.interventions
            self.bytes_received += int(guide.get("bytes_received", 0))
        self.texts.append(r.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk, "tokens": self.tokens, "interventions": self.interventions,
            "intervention_rate": round(self.rate, 4), "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "client_ms_per_token": round(self.client_ms_per_token, 3),
            "base_wait_ms_per_token": round(1000 * self.base_wait_s / self.tokens, 2) if self.tokens else 0.0,
            "bytes_received": self.bytes_received, "bytes_per_token": round(
                self.bytes_received / self.tokens, 1) if self.tokens else 0.0,
            "base_requests": self.base_requests, "base_request_bound": self.base_bound,
            "base_requests_per_token": round(self.base_requests / self.tokens, 3) if self.tokens else 0.0,
            "answers_over_base_bound": self.base_over,
            "guide_requests": self.guide_requests, "answers_over_guide_bound": self.guide_over,
        }


def conversation(question: str) -> Conversation:
    return Conversation.single(question, system=REFERENCE_SYSTEM, plain=QA_FORMAT)


def warm(pair: ModelPair, question: str) -> None:
    """Show the base server the question's prompt once, outside the measurement: llama-server
    evaluates a new prompt in one batch but re-evaluates only the last token of a cached one, which
    moves its logits slightly — both loops should meet the same cache state."""
    assert pair.base is not None
    prompt = prompt_for(pair.base, conversation(question), role="base").text.decode()
    base = pair.base
    assert is_remote(base)
    base.next_position(prompt, logprobs=1)


def answer(pair: ModelPair, question: str, *, chunk: int, gamma: float, max_tokens: int) -> Result:
    """One greedy BlendIn (top-100) answer with the base asked ``chunk`` tokens per request; the
    remote models' traffic counts this answer only."""
    base = pair.base
    assert is_remote(base), "the remote bench needs a base on a server"
    saved = base.chunk_tokens
    for engine in (pair.base, pair.guide):
        if is_remote(engine):
            engine.traffic = Traffic()
    base.chunk_tokens = chunk
    try:
        conv = conversation(question)
        settings = GenerationSettings(method="blendin", support="top100", gamma=gamma,
                                      max_tokens=max_tokens)
        return generate(pair, conv, settings).run()
    finally:
        base.chunk_tokens = saved


def run_remote_bench(pair: ModelPair, *, chunk: int, max_tokens: int, rounds: int,
                     gamma: float = GAMMA) -> dict[str, Any]:
    """Both loops on every question in turn, ``rounds`` times (the machine's drift hits both)."""
    chunked, per_token = LoopRun(f"chunked (K={chunk})", chunk), LoopRun("per-token (K=1)", 1)
    for _ in range(rounds):
        for question in QUESTIONS:
            warm(pair, question)
            for run in (chunked, per_token):
                run.add(answer(pair, question, chunk=run.chunk, gamma=gamma, max_tokens=max_tokens))
    same = sum(a == b for a, b in zip(chunked.texts, per_token.texts, strict=True))
    ratio = chunked.tokens_per_s / per_token.tokens_per_s if per_token.tokens_per_s else 0.0
    speed_applies = chunked.rate < SPEEDUP_BELOW_RATE
    guide_row: dict[str, Any]
    if chunked.guide_requests is None:
        guide_row = {"metric": "guide requests <= interventions", "value": "local guide",
                     "target": "<= interventions", "ok": None}
    else:
        guide_row = {"metric": "guide requests <= interventions",
                     "value": f"{chunked.guide_requests} / {chunked.interventions}",
                     "target": "<= interventions (every answer)", "ok": chunked.guide_over == 0}
    targets = [
        {"metric": f"base requests <= interventions + ceil(tokens/{chunk}) + 1",
         "value": f"{chunked.base_requests} / {chunked.base_bound}",
         "target": "<= bound (every answer)", "ok": chunked.base_over == 0},
        guide_row,
        {"metric": "client ms per token (chunked)", "value": round(chunked.client_ms_per_token, 3),
         "target": f"<= {CLIENT_MS_TARGET:g}", "ok": chunked.client_ms_per_token <= CLIENT_MS_TARGET},
        {"metric": "chunked / per-token tok/s", "value": round(ratio, 3),
         "target": f">= {SPEEDUP_TARGET:g} (interventions < {SPEEDUP_BELOW_RATE:.0%})",
         "ok": ratio >= SPEEDUP_TARGET if speed_applies else None},
        {"metric": "greedy text chunked == per-token", "value": f"{same} / {len(chunked.texts)}",
         "target": "every answer", "ok": same == len(chunked.texts)},
    ]
    return {
        "runs": {run.name: run.to_dict() for run in (chunked, per_token)},
        "targets": targets,
        "servers": {role: engine.name for role, engine in (("base", pair.base), ("guide", pair.guide))
                    if engine is not None},
        "gamma": gamma, "max_tokens": max_tokens, "rounds": rounds, "questions": len(QUESTIONS),
    }


def print_remote_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    servers = ", ".join(f"{role}: {name}" for role, name in report["servers"].items())
    t = Table(title=f"BlendIn top-100, γ={report['gamma']}, greedy: {report['questions']} GSM8K-style "
                    f"questions × {report['rounds']} rounds, ≤{report['max_tokens']} tokens ({servers})")
    cols = ("loop", "tokens", "interventions", "base req (bound)", "guide req", "KB received",
            "base wait ms/tok", "client ms/tok", "tok/s")
    for col in cols:
        t.add_column(col, justify="left" if col == "loop" else "right")
    for name, r in report["runs"].items():
        guide = "local" if r["guide_requests"] is None else str(r["guide_requests"])
        t.add_row(name, str(r["tokens"]), f"{r['interventions']} ({r['intervention_rate']:.1%})",
                  f"{r['base_requests']} ({r['base_request_bound']})", guide,
                  f"{r['bytes_received'] / 1000:.0f}", f"{r['base_wait_ms_per_token']:.1f}",
                  f"{r['client_ms_per_token']:.2f}",
                  f"{r['tokens_per_s']:.1f}")
    console.print(t)
    t2 = Table(title="targets")
    for col in ("metric", "value", "target", ""):
        t2.add_column(col)
    marks = {True: "[green]met[/]", False: "[red]missed[/]", None: "n/a"}
    for row in report["targets"]:
        t2.add_row(row["metric"], str(row["value"]), row["target"], marks[row["ok"]])
    console.print(t2)


@contextmanager
def native_servers(opts: dict[str, Any], which: str) -> Iterator[dict[str, Any]]:
    """``opts`` with the base (``which == "base"``) or base and guide (``"pair"``) replaced by
    llama-server instances holding those GGUFs, for the length of the block."""
    from .engines.remote import RemoteSpec
    from .models import default_model, resolve_model
    from .native_server import find_llama_server, llama_server

    binary = find_llama_server(opts.get("llama_server"))
    served = dict(opts)
    roles = ("base", "guide") if which == "pair" else ("base",)
    with ExitStack() as stack:
        for role in roles:
            name = opts.get(role) or default_model(role)
            if RemoteSpec.is_remote(name):
                continue  # already on a server
            path = resolve_model(name)
            url = stack.enter_context(llama_server(binary, path, name, n_ctx=min(opts["n_ctx"], 4096),
                                                   threads=opts.get("threads") or 2))
            served[role] = f"{url}#{name}"
        yield served
