"""``blendin-local bench`` with the base on a server: our chunked loop (one base request per confident
run of up to K tokens) against the reference's per-token loop (one request per model per token, the
whole text re-sent), side by side in one run on the same servers and GSM8K-style questions, BlendIn
with the paper's top-100 string blend at γ = 0.4 (or nudging), greedy.

Each round trip time asked (``--rtt``) puts a :mod:`netem` delay proxy between the client and every
server. Where llama-server runs with ``--metrics`` the tokens it generated are read before and after
each answer, against the tokens kept. ``--remote-native`` starts llama.cpp's ``llama-server`` on free
loopback ports for the run (the base, or the whole pair) and stops it after: a server whose logprobs
are cheap, as vLLM's are on a GPU; ``--pin-server`` adds a variant with that server on its own
core(s) and the client on the others, as on two machines.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..engines import server_of, servers
from ..engines.remote.engine import RemoteModel, Traffic
from ..engines.remote.netem import delay_proxy, through
from ..generation.generate import generate
from ..generation.steps import Result
from ..pair import ModelPair, prompt_for
from ..prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from ..settings import GenerationSettings

GAMMA = 0.4
CLIENT_MS_TARGET = 2.0
SPEEDUP_AT_RTT = ((20.0, 2.0), (0.0, 1.0))  # (from this RTT in ms, chunked / per-token tok/s at least)
GUIDE_SLOWDOWN_TARGET = 1.2  # guide s per intervention, chunked / per-token, at most
SERVER_WASTE_TARGET = 1.25  # tokens the server generated / tokens kept (chunked), at most

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
    keep_open: bool = True  # the stream stays open through unsure positions (chunked loops)
    tokens: int = 0
    interventions: int = 0
    seconds: float = 0.0  # decode time: a local guide's prompt processing excluded
    client_s: float = 0.0
    base_wait_s: float = 0.0  # blocked on the base server (its compute, the network, HTTP)
    settle_s: float = 0.0  # of base_wait_s: left to a server on this machine to stop after a close
    guide_s: float = 0.0  # the guide's time at interventions (local compute, or its requests)
    bytes_received: int = 0
    base_requests: int = 0
    base_bound: int = 0  # sum over answers of interventions + ceil(tokens / K) + 1, K its largest chunk
    largest_chunk: int = 0  # the most tokens one base request asked, over every answer
    base_over: int = 0  # answers whose base requests exceeded their bound
    guide_requests: int | None = None  # None: a local guide
    guide_over: int = 0
    server_generated: int | None = None  # tokens the base server generated (its --metrics)
    base_token_kept: int = 0  # interventions where the blend chose the base's own token
    decided_open: int = 0  # interventions decided with the base's stream kept open
    kept_open: int = 0  # ... of them, the blend kept the base's token: read on, no request
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

    @property
    def guide_ms_per_intervention(self) -> float:
        return 1000 * self.guide_s / self.interventions if self.interventions else 0.0

    @property
    def generated_per_kept(self) -> float | None:
        if self.server_generated is None or not self.tokens:
            return None
        return self.server_generated / self.tokens

    def add(self, r: Result, generated: int | None) -> None:
        remote = r.remote or {}
        base, guide = remote.get("base", {}), remote.get("guide")
        self.tokens += r.tokens
        self.interventions += r.interventions
        self.seconds += r.seconds - r.prefill_s
        self.client_s += float(remote.get("client_ms_per_token", 0.0)) * r.tokens / 1000
        self.guide_s += r.t_guide
        largest = int(base.get("largest_chunk", 0)) or self.chunk  # the bound's K: the most asked
        self.largest_chunk = max(self.largest_chunk, largest)
        bound = r.interventions + math.ceil(r.tokens / largest) + 1
        self.base_requests += int(base.get("requests", 0))
        self.base_wait_s += float(base.get("seconds", 0.0))
        self.settle_s += float(base.get("settle_seconds", 0.0))
        self.base_bound += bound
        self.base_over += int(base.get("requests", 0)) > bound
        self.bytes_received += int(base.get("bytes_received", 0))
        self.base_token_kept += int(base.get("base_token_kept", 0))
        self.decided_open += int(base.get("decided_open", 0))
        self.kept_open += int(base.get("kept_open", 0))
        if guide is not None:
            self.guide_requests = (self.guide_requests or 0) + int(guide["requests"])
            self.guide_over += int(guide["requests"]) > r.interventions
            self.bytes_received += int(guide.get("bytes_received", 0))
        if generated is not None:
            self.server_generated = (self.server_generated or 0) + generated
        self.texts.append(r.text)

    def to_dict(self) -> dict[str, Any]:
        per_token = (lambda x: round(x / self.tokens, 3)) if self.tokens else (lambda x: 0.0)
        waste = self.generated_per_kept
        return {
            "chunk": self.chunk, "tokens": self.tokens, "interventions": self.interventions,
            "intervention_rate": round(self.rate, 4), "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "client_ms_per_token": round(self.client_ms_per_token, 3),
            "base_wait_ms_per_token": round(1000 * per_token(self.base_wait_s), 2),
            "settle_ms_per_token": round(1000 * per_token(self.settle_s), 2),
            "guide_ms_per_intervention": round(self.guide_ms_per_intervention, 2),
            "bytes_received": self.bytes_received, "bytes_per_token": per_token(self.bytes_received),
            "base_requests": self.base_requests, "base_request_bound": self.base_bound,
            "largest_chunk": self.largest_chunk,
            "base_requests_per_token": per_token(self.base_requests),
            "answers_over_base_bound": self.base_over,
            "guide_requests": self.guide_requests, "answers_over_guide_bound": self.guide_over,
            "server_generated": self.server_generated,
            "server_generated_per_kept": None if waste is None else round(waste, 3),
            "base_token_kept": self.base_token_kept, "decided_open": self.decided_open,
            "kept_open": self.kept_open,
        }


def conversation(question: str) -> Conversation:
    return Conversation.single(question, system=REFERENCE_SYSTEM, plain=QA_FORMAT)


def warm(pair: ModelPair, question: str) -> None:
    """Show each server the question's prompt once, outside the measurement: llama-server
    evaluates a new prompt in one batch but re-evaluates only the last token of a cached one, which
    moves its logits slightly — both loops should meet the same cache state. A remote guide's
    prompt is rendered here too (its ``/apply-template`` request, once per conversation, was
    counted in whichever loop ran first)."""
    for engine, role in ((pair.base, "base"), (pair.guide, "guide")):
        if engine is not None and servers(engine):
            prompt = prompt_for(engine, conversation(question), role=role).text.decode()
            server_of(engine).next_position(prompt, logprobs=1)


def answer(pair: ModelPair, question: str, *, chunk: int, gamma: float, max_tokens: int,
           method: str = "blendin", keep_open: bool = True) -> Result:
    """One greedy answer (BlendIn top-100, or nudging) with the base asked at most ``chunk`` tokens
    per request, its stream kept open through unsure positions or not; the remote models' traffic
    counts this answer only."""
    base = server_of(pair.base)  # the remote bench needs a base on a server
    saved = base.chunk_tokens, base.keep_open
    for server in servers(pair.base, pair.guide):
        server.traffic = Traffic()
    base.chunk_tokens, base.keep_open = chunk, keep_open
    try:
        conv = conversation(question)
        support = "top100" if method == "blendin" else "full"
        settings = GenerationSettings(method=method, support=support, gamma=gamma, max_tokens=max_tokens)
        return generate(pair, conv, settings).run()
    finally:
        base.chunk_tokens, base.keep_open = saved


class ServerCounter:
    """llama-server's ``/metrics`` (``--metrics``): tokens generated so far, read once the server
    is idle (a slot's tokens are counted when it is released, also after a cancel)."""

    def __init__(self, root: str) -> None:
        self.url = f"{root}/metrics"

    @classmethod
    def of(cls, engine: RemoteModel) -> ServerCounter | None:
        counter = cls(engine.spec.url.removesuffix("/v1"))
        return counter if counter.generated() is not None else None

    def generated(self) -> int | None:
        deadline = time.monotonic() + 5
        while True:
            try:
                response = httpx.get(self.url, timeout=5)
            except httpx.HTTPError:
                return None
            if response.status_code != 200:
                return None
            found = dict(re.findall(r"^llamacpp:(\w+) ([0-9.e+]+)$", response.text, re.MULTILINE))
            if "tokens_predicted_total" not in found:
                return None
            if float(found.get("requests_processing", 0)) == 0 or time.monotonic() > deadline:
                return int(float(found["tokens_predicted_total"]))
            time.sleep(0.01)


@contextmanager
def network(pair: ModelPair, rtt_ms: float) -> Iterator[None]:
    """Every remote model of ``pair`` reached through a delay proxy adding ``rtt_ms`` (none at 0)."""
    engines = servers(pair.base, pair.guide)
    if rtt_ms <= 0:
        yield
        return
    with ExitStack() as stack:
        for engine in engines:
            proxy = stack.enter_context(delay_proxy(engine.spec.url, rtt_ms))
            engine.route(through(engine.spec.url, proxy))
            stack.callback(engine.route, engine.spec.url)
        yield


def run_loops(pair: ModelPair, *, chunk: int, max_tokens: int, rounds: int, gamma: float,
              method: str, counter: ServerCounter | None, questions: int = len(QUESTIONS)
              ) -> tuple[LoopRun, LoopRun, LoopRun]:
    """The loops on each of the first ``questions`` questions in turn, ``rounds`` times, a different
    loop first on each question (the machine's drift and a cold start hit all): chunked with the
    stream kept open through unsure positions, chunked closing it there (as before; BlendIn only:
    nudging never keeps it open), per token."""
    chunked = LoopRun(f"chunked (K≤{chunk}), kept open", chunk)
    closing = LoopRun(f"chunked (K≤{chunk}), closes", chunk, keep_open=False)
    per_token = LoopRun("per-token (K=1)", 1)
    loops = (chunked, closing, per_token) if method == "blendin" else (chunked, per_token)
    for _ in range(rounds):
        for i, question in enumerate(QUESTIONS[:questions]):
            warm(pair, question)
            for run in loops[i % len(loops):] + loops[:i % len(loops)]:  # each loop first in turn
                before = counter.generated() if counter else None
                r = answer(pair, question, chunk=run.chunk, gamma=gamma, max_tokens=max_tokens,
                           method=method, keep_open=run.keep_open)
                after = counter.generated() if counter else None
                run.add(r, None if before is None or after is None else after - before)
    return chunked, closing, per_token


def speedup_target(rtt_ms: float) -> float:
    return next(target for floor, target in SPEEDUP_AT_RTT if rtt_ms >= floor)


def targets(chunked: LoopRun, per_token: LoopRun, *, rtt_ms: float, method: str,
            closing: LoopRun | None = None) -> list[dict[str, Any]]:
    """The issue's targets for one round trip time: met (True), missed (False), n/a (None); and,
    informative (n/a), the kept-open loop against the ``closing`` one and its read-on share."""
    same = sum(a == b for a, b in zip(chunked.texts, per_token.texts, strict=True))
    ratio = chunked.tokens_per_s / per_token.tokens_per_s if per_token.tokens_per_s else 0.0
    want = speedup_target(rtt_ms)
    guide_ratio = (chunked.guide_ms_per_intervention / per_token.guide_ms_per_intervention
                   if per_token.guide_ms_per_intervention else 0.0)
    waste = chunked.generated_per_kept
    bound_applies = method == "blendin"
    rows: list[dict[str, Any]] = [
        {"metric": "chunked / per-token tok/s", "value": round(ratio, 3), "target": f">= {want:g}",
         "ok": ratio >= want},
        {"metric": "guide ms per intervention, chunked / per-token", "value": round(guide_ratio, 3),
         "target": f"<= {GUIDE_SLOWDOWN_TARGET:g}", "ok": guide_ratio <= GUIDE_SLOWDOWN_TARGET},
        {"metric": "server tokens generated / kept (chunked)",
         "value": "no --metrics" if waste is None else round(waste, 3),
         "target": f"<= {SERVER_WASTE_TARGET:g}",
         "ok": None if waste is None else waste <= SERVER_WASTE_TARGET},
        {"metric": "base requests <= interventions + ceil(tokens/K) + 1",
         "value": f"{chunked.base_requests} / {chunked.base_bound} (K: each answer's largest chunk, "
                  f"<= {chunked.largest_chunk})",
         "target": "<= bound (every answer)" if bound_applies else "n/a: nudging checks words",
         "ok": chunked.base_over == 0 if bound_applies else None},
    ]
    if chunked.guide_requests is None:
        rows.append({"metric": "guide requests <= interventions", "value": "local guide",
                     "target": "<= interventions", "ok": None})
    else:
        rows.append({"metric": "guide requests <= interventions",
                     "value": f"{chunked.guide_requests} / {chunked.interventions}",
                     "target": "<= interventions (every answer)", "ok": chunked.guide_over == 0})
    rows += [
        {"metric": "client ms per token (chunked)", "value": round(chunked.client_ms_per_token, 3),
         "target": f"<= {CLIENT_MS_TARGET:g}", "ok": chunked.client_ms_per_token <= CLIENT_MS_TARGET},
        {"metric": "greedy text chunked == per-token", "value": f"{same} / {len(chunked.texts)}",
         "target": "every answer", "ok": same == len(chunked.texts)},
    ]
    if closing is not None and closing.tokens:
        same = sum(a == b for a, b in zip(closing.texts, per_token.texts, strict=True))
        rows += [
            {"metric": "chunked kept open / closing tok/s",
             "value": round(chunked.tokens_per_s / closing.tokens_per_s, 3) if closing.tokens_per_s else 0.0,
             "target": "informative", "ok": None},
            {"metric": "interventions read on (the blend kept the base's token)",
             "value": f"{chunked.kept_open} / {chunked.decided_open} kept open; the base's token "
                      f"chosen at {per_token.base_token_kept} / {per_token.interventions} (per-token)",
             "target": "informative", "ok": None},
            {"metric": "greedy text closing == per-token", "value": f"{same} / {len(closing.texts)}",
             "target": "every answer", "ok": same == len(closing.texts)},
        ]
    return rows


def run_remote_bench(pair: ModelPair, *, chunk: int, max_tokens: int, rounds: int,
                     gamma: float = GAMMA, rtts: Sequence[float] = (0.0,), method: str = "blendin",
                     variant: str = "shared cores", questions: int = len(QUESTIONS)) -> dict[str, Any]:
    """Both loops at every round trip time in ``rtts``: one entry per RTT under ``"variants"``."""
    base = server_of(pair.base)  # the remote bench needs a base on a server
    counter = ServerCounter.of(base)
    variants = []
    for rtt_ms in rtts:
        with network(pair, rtt_ms):
            chunked, closing, per_token = run_loops(pair, chunk=chunk, max_tokens=max_tokens,
                                                    rounds=rounds, gamma=gamma, method=method,
                                                    counter=counter, questions=questions)
        ran = (chunked, closing, per_token) if closing.tokens else (chunked, per_token)
        variants.append({"variant": variant, "rtt_ms": rtt_ms,
                         "waits_for_server": base.shares_cpu,
                         "runs": {run.name: run.to_dict() for run in ran},
                         "targets": targets(chunked, per_token, rtt_ms=rtt_ms, method=method,
                                            closing=closing)})
    return {
        "variants": variants,
        "servers": {role: engine.name for role, engine in (("base", pair.base), ("guide", pair.guide))
                    if engine is not None},
        "method": method, "gamma": gamma, "max_tokens": max_tokens, "rounds": rounds,
        "questions": min(questions, len(QUESTIONS)), "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def print_remote_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    servers = ", ".join(f"{role}: {name}" for role, name in report["servers"].items())
    title = (f"{report['method']}, γ={report['gamma']}, greedy: {report['questions']} GSM8K-style "
             f"questions × {report['rounds']} rounds, ≤{report['max_tokens']} tokens ({servers}); "
             f"load average after: {' '.join(map(str, report['load_average']))}")
    t = Table(title=title)
    cols = ("variant", "RTT ms", "loop", "tokens", "interventions", "base req (bound)", "guide req",
            "server gen / kept", "base wait ms/tok", "settle ms/tok", "guide ms/interv.",
            "client ms/tok", "read on", "tok/s")
    for col in cols:
        t.add_column(col, justify="left" if col in ("variant", "loop") else "right")
    for v in report["variants"]:
        for name, r in v["runs"].items():
            guide = "local" if r["guide_requests"] is None else str(r["guide_requests"])
            waste = "–" if r["server_generated"] is None else f"{r['server_generated']} / {r['tokens']}"
            t.add_row(v["variant"], f"{v['rtt_ms']:g}", name, str(r["tokens"]),
                      f"{r['interventions']} ({r['intervention_rate']:.1%})",
                      f"{r['base_requests']} ({r['base_request_bound']})", guide, waste,
                      f"{r['base_wait_ms_per_token']:.1f}", f"{r['settle_ms_per_token']:.1f}",
                      f"{r['guide_ms_per_intervention']:.1f}", f"{r['client_ms_per_token']:.2f}",
                      f"{r['kept_open']} / {r['decided_open']}" if r["decided_open"] else "–",
                      f"{r['tokens_per_s']:.1f}")
    console.print(t)
    t2 = Table(title="targets")
    for col in ("variant", "RTT ms", "metric", "value", "target", ""):
        t2.add_column(col)
    marks = {True: "[green]met[/]", False: "[red]missed[/]", None: "n/a"}
    for v in report["variants"]:
        for row in v["targets"]:
            t2.add_row(v["variant"], f"{v['rtt_ms']:g}", row["metric"], str(row["value"]),
                       row["target"], marks[row["ok"]])
    console.print(t2)


@contextmanager
def native_servers(opts: dict[str, Any], which: str, *, cpus: set[int] | None = None,
                   threads: int | None = None) -> Iterator[dict[str, Any]]:
    """``opts`` with the base (``which == "base"``) or base and guide (``"pair"``) replaced by
    llama-server instances (with ``--metrics``, on ``cpus`` where given) holding those GGUFs, for
    the length of the block."""
    from ..engines.remote.engine import RemoteSpec
    from ..engines.remote.native_server import find_llama_server, llama_server
    from ..models import default_model, resolve_model

    binary = find_llama_server(opts.get("llama_server"))
    served = dict(opts)
    roles = ("base", "guide") if which == "pair" else ("base",)
    with ExitStack() as stack:
        for role in roles:
            name = opts.get(role) or default_model(role)
            if RemoteSpec.is_remote(name):
                continue  # already on a server
            path = resolve_model(name)
            url = stack.enter_context(llama_server(
                binary, path, name, n_ctx=min(opts["n_ctx"], 4096),
                threads=threads or shared_threads(opts.get("threads"))[1], extra=("--metrics",),
                cpus=cpus))
            served[role] = f"{url}#{name}"
        yield served


def shared_threads(client: int | None) -> tuple[int, int]:
    """Threads for (the client's local models, a server started on the same cores): together no
    more than the cores, the server the upper half (or what ``client`` threads leave, at least 1).
    llama.cpp's thread pools spin at barriers: a server on every core beside a client's model, or
    any other busy process, decoded a streamed token 3-4x slower (README: "Requests and speed")."""
    cores = len(os.sched_getaffinity(0))
    if client is None:
        client = max(1, cores // 2)
    return client, max(1, cores - client)


def split_cores() -> tuple[set[int], set[int]] | None:
    """This process's cores split in two, (client's, server's) — the server gets the upper half —
    or None where there is only one."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


@contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Every thread of this process (llama.cpp's pools included) on ``cores`` for the block."""
    saved = os.sched_getaffinity(0)

    def pin_all(to: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), to)
            except OSError:  # a thread that ended meanwhile
                pass

    pin_all(cores)
    try:
        yield
    finally:
        pin_all(saved)
