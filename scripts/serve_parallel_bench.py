"""``serve --parallel``: throughput and time to first token through the real server, each beside
the in-process ``generate_many`` figure of the very same requests (issue 17).

For each --parallel value: starts ``blendin-local serve`` (the default pair, fresh KV caches, greedy)
on a loopback port, warms it up, then for each workload, ``--rounds`` times (the order of the two
alternating per round, so that a drift of the machine's load hits both alike):

1. 8 streamed clients at once × ``--max-tokens`` tokens: aggregate tok/s (completion tokens of all
   answers over the wall time from the first request sent to the last ``[DONE]``), and the CPU
   seconds of the server's decoding thread and of its other threads (HTTP, SSE) and of the clients;
2. ``generate_many`` at B = --parallel in this process (the server idle meanwhile) on the same
   requests, turned into conversations and settings by the server's own code (``serve/schema.py``,
   the serve command's defaults): its tok/s, and the server's fraction of it.

Workloads: ``bench`` sends ``bench --throughput``'s eight prompts to ``/v1/completions`` with its
settings (checked equal here), so its in-process figure is the bench's B = 8 blendin figure of the
same run; ``chat`` sends eight chat questions to ``/v1/chat/completions`` (chat template and
system prompt: longer prompts, answers that end at EOS).

With ``--before DIR`` a second server runs the ``blendin_local`` package under DIR (e.g. ``git
archive main blendin_local | tar -x -C DIR``, with DIR/models linked to the checkout's), its
requests interleaved with this tree's in every round: a before/after of one run.

Then 3. the time to first token (TTFT) of a lone chat request (median of 3), and 4. of one sent
once 7 others are streaming (as many tokens each, so they are still running when it arrives). It
prints the numbers with the load average, and how many of the 8 chat answers are the same text at
every --parallel value (batched arithmetic may move near-ties, spec §11).

Usage (from the repository root, models fetched):
    .venv/bin/python scripts/serve_parallel_bench.py --parallel 8 --max-tokens 128 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from blendin_local.bench import throughput
from blendin_local.cli_options import pair_from_options, settings_from_options
from blendin_local.commands.serve import serve_command
from blendin_local.engines.remote.shapes import stream_chunks
from blendin_local.generation.many import generate_many
from blendin_local.prompts import Conversation
from blendin_local.serve.schema import (
    ChatRequest,
    CompletionRequest,
    chat_to_conversation,
    completion_to_conversation,
    request_settings,
)
from blendin_local.settings import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Tell me a long story about a dragon who learns to bake bread.",
    "Explain in detail how a steam engine works.",
    "Describe the history of the Roman Empire.",
    "Write a long letter to a friend about your summer holiday by the sea.",
    "Explain how the internet works, step by step.",
    "Describe a walk through a busy market in a big city.",
    "Tell me everything you know about the planets of the solar system.",
    "Write a detailed recipe for a vegetable soup and explain each step.",
]
WORKLOADS = ("bench", "chat")
Request = tuple[str, dict[str, Any]]  # route, JSON body


def requests_for(workload: str, max_tokens: int) -> list[Request]:
    if workload == "chat":
        return [("/v1/chat/completions", {"model": "blendin", "max_tokens": max_tokens,
                                          "messages": [{"role": "user", "content": q}]})
                for q in QUESTIONS]
    return [("/v1/completions", {"model": "blendin", "max_tokens": max_tokens, "prompt": p})
            for p in throughput.PROMPTS]


@dataclass
class Answer:
    text: str = ""
    tokens: int = 0
    sent: float = 0.0
    first: float | None = None
    done: float | None = None

    @property
    def ttft(self) -> float:
        assert self.first is not None
        return self.first - self.sent


def stream(url: str, request: Request, out: Answer) -> None:
    route, body = request
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    out.sent = time.monotonic()
    with httpx.stream("POST", url + route, json=body, timeout=600) as r:
        r.raise_for_status()
        for chunk in stream_chunks(r.iter_lines()):
            if chunk.get("usage"):
                out.tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                piece = choice.get("text") or choice.get("delta", {}).get("content")
                if piece:
                    out.first = out.first or time.monotonic()
                    out.text += piece
    out.done = time.monotonic()


def in_thread(url: str, request: Request) -> tuple[threading.Thread, Answer]:
    answer = Answer()
    thread = threading.Thread(target=stream, args=(url, request, answer), daemon=True)
    thread.start()
    return thread, answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_options(parallel: int, n_ctx: int, threads: int) -> list[str]:
    """The options of both the server and the in-process run."""
    return ["--fresh-cache", "--parallel", str(parallel), "--n-ctx", str(n_ctx),
            "--threads", str(threads), "--queue-timeout", "3600"]


def serve(options: list[str], log: Path, tree: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server (from the package under ``tree``, else this checkout's)."""
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/blendin-local"), "serve", "--port", str(port), *options,
           "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "BLENDIN_API_KEY"}
    if tree is not None:
        env["PYTHONPATH"] = tree
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")
        try:
            httpx.get(url + "/v1/models", timeout=5)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.5)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class InProcess:
    """The server's requests decoded by ``generate_many`` in this process, turned into
    conversations and settings by the server's own code with the serve command's defaults."""

    def __init__(self, options: list[str]) -> None:
        params = dict(serve_command.make_context("serve", list(options)).params)
        self.params = params
        self.defaults = replace(settings_from_options(params), reuse_cache=not params["fresh_cache"])
        self.pair = pair_from_options(params, ["blendin"])

    def jobs(self, requests: list[Request]) -> tuple[list[Conversation], list[GenerationSettings]]:
        convs, settings = [], []
        for route, body in requests:
            req: ChatRequest | CompletionRequest
            if route == "/v1/chat/completions":
                req = ChatRequest.model_validate_json(json.dumps(body))
                convs.append(chat_to_conversation(req, self.params["system"]))
            else:
                req = CompletionRequest.model_validate_json(json.dumps(body))
                convs.append(completion_to_conversation(req))
            settings.append(request_settings(req, self.defaults, method=req.method or req.model,
                                             max_tokens_limit=self.params["max_tokens_limit"]))
        return convs, settings

    def rate(self, requests: list[Request], batch: int) -> tuple[int, float, float]:
        """Tokens, wall seconds and CPU seconds of ``generate_many`` at ``batch``."""
        convs, settings = self.jobs(requests)
        many = generate_many(self.pair, convs, settings, batch=batch)
        t0, cpu0 = time.perf_counter(), own_cpu()
        results = many.run()
        return sum(r.tokens for r in results), time.perf_counter() - t0, own_cpu() - cpu0


def same_as_bench(local: InProcess, max_tokens: int) -> bool:
    """Are the ``bench`` workload's conversations and settings ``bench --throughput``'s?"""
    convs, settings = local.jobs(requests_for("bench", max_tokens))
    return (convs == throughput._convs()
            and all(s == throughput._settings("blendin", max_tokens) for s in settings))


def clients(url: str, requests: list[Request], pid: int) -> dict[str, Any]:
    """Send all requests at once (streamed), wait for every answer."""
    threads0, own0 = thread_cpu(pid), own_cpu()
    t0 = time.monotonic()
    runs = [in_thread(url, r) for r in requests]
    for thread, _ in runs:
        thread.join()
    wall = time.monotonic() - t0
    threads1 = thread_cpu(pid)
    used = sorted((threads1[t] - threads0.get(t, 0.0) for t in threads1), reverse=True)
    answers = [a for _, a in runs]
    tokens = sum(a.tokens for a in answers)
    return {"tokens": tokens, "wall_s": wall, "tok_s": tokens / wall, "texts": [a.text for a in answers],
            "cpu_decode_thread_s": used[0], "cpu_other_server_threads_s": sum(used[1:]),
            "cpu_clients_s": own_cpu() - own0}


Server = tuple[str, subprocess.Popen[bytes]]  # URL, process


def throughput_rounds(servers: dict[str, Server], local: InProcess, parallel: int, workload: str,
                      max_tokens: int, rounds: int) -> dict[str, Any]:
    """The in-process run and each server's, in an order that rotates every round."""
    requests = requests_for(workload, max_tokens)
    served: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    inproc: list[tuple[int, float, float]] = []
    order = ["in-process", *servers]
    for r in range(rounds):
        for what in order[r % len(order):] + order[: r % len(order)]:
            if what == "in-process":
                inproc.append(local.rate(requests, parallel))
            else:
                url, proc = servers[what]
                served[what].append(clients(url, requests, proc.pid))
    in_tokens, in_wall = sum(t for t, _, _ in inproc), sum(s for _, s, _ in inproc)
    row: dict[str, Any] = {
        "workload": workload, "in_process_tokens": in_tokens, "in_process_wall_s": round(in_wall, 2),
        "in_process_tok_s": round(in_tokens / in_wall, 2),
        "in_process_cpu_s": round(sum(c for _, _, c in inproc), 2),
        "in_process_per_round_tok_s": [round(t / w, 1) for t, w, _ in inproc]}
    for name, runs in served.items():
        tokens, wall = sum(s["tokens"] for s in runs), sum(s["wall_s"] for s in runs)
        row[name] = {"tokens": tokens, "wall_s": round(wall, 2), "tok_s": round(tokens / wall, 2),
                     "over_in_process": round(tokens / wall / (in_tokens / in_wall), 3),
                     "per_round_tok_s": [round(s["tok_s"], 1) for s in runs]}
        for key in ("cpu_decode_thread_s", "cpu_other_server_threads_s", "cpu_clients_s"):
            row[name][key] = round(sum(s[key] for s in runs), 2)
    row["texts"] = served["serve"][0]["texts"]
    return row


def ttfts(url: str, parallel: int, max_tokens: int) -> dict[str, Any]:
    chat = requests_for("chat", max_tokens)
    short = (chat[0][0], {**chat[0][1], "max_tokens": 8})
    lone = []
    for _ in range(3):
        a = Answer()
        stream(url, short, a)
        lone.append(a.ttft)
    busy = [in_thread(url, r) for r in chat[1:]]
    # all 7 sent, and as many streaming as can (at --parallel 1: one runs, six wait)
    while not (all(a.sent for _, a in busy)
               and sum(a.first is not None for _, a in busy) >= min(parallel, 7)):
        time.sleep(0.01)
    late = Answer()
    stream(url, short, late)
    others_done = sum(1 for _, a in busy if a.done is not None)
    for thread, _ in busy:
        thread.join()
    return {"ttft_lone_s": round(statistics.median(lone), 3),
            "ttft_while_7_run_s": round(late.ttft, 3),
            "ttft_ratio": round(late.ttft / statistics.median(lone), 2),
            "of_7_done_before_it_ended": others_done}


def measure(parallel: int, args: argparse.Namespace) -> dict[str, Any]:
    options = serve_options(parallel, args.n_ctx, args.threads)
    local = InProcess(options)
    print(f"bench workload = bench --throughput's prompts and settings: "
          f"{same_as_bench(local, args.max_tokens)}", flush=True)
    trees = {"serve": None, **({"serve (before)": args.before} if args.before else {})}
    servers: dict[str, Server] = {}
    try:
        for name, tree in trees.items():
            proc, url = serve(options, Path(f"/tmp/serve_parallel_{parallel}_{len(servers)}.log"), tree)
            servers[name] = url, proc
            stream(url, requests_for("chat", 8)[0], Answer())  # warm-up
        local.rate(requests_for("chat", 8)[:1], 1)
        rows = []
        for workload in args.workload:
            row = throughput_rounds(servers, local, parallel, workload, args.max_tokens, args.rounds)
            print(f"--parallel {parallel} {workload}: in-process generate_many "
                  f"{row['in_process_tok_s']} tok/s; " + "; ".join(
                      f"{name} {row[name]['tok_s']} tok/s = {row[name]['over_in_process']} of it"
                      for name in servers), flush=True)
            rows.append(row)
        return {"parallel": parallel, "throughput": rows,
                **{name: ttfts(url, parallel, args.max_tokens) for name, (url, _) in servers.items()}}
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, nargs="+", default=[8])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--before", metavar="DIR", help="also serve the blendin_local package under DIR")
    args = ap.parse_args()
    print("load average before:", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    results = [measure(p, args) for p in args.parallel]
    for r in results:
        shown = {**r, "throughput": [{k: v for k, v in row.items() if k != "texts"}
                                     for row in r["throughput"]]}
        print(json.dumps(shown))
    compare_texts(results)
    print("load average after:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


def compare_texts(results: list[dict[str, Any]]) -> None:
    """How many answers of each workload are the same text at every --parallel value."""
    if len(results) < 2:
        return
    for w, row in enumerate(results[0]["throughput"]):
        first = row["texts"]
        others = [(r["parallel"], r["throughput"][w]["texts"]) for r in results[1:]]
        same = sum(all(texts[i] == first[i] for _, texts in others) for i in range(len(first)))
        print(f"{row['workload']}: answers with the same text at every --parallel: {same} of {len(first)}")
        for i, text in enumerate(first):
            for parallel, texts in others:
                if texts[i] != text:
                    common = os.path.commonprefix([text, texts[i]])
                    print(f"  answer {i}: --parallel {parallel} agrees on the first {len(common)} of "
                          f"{len(text)} / {len(texts[i])} characters")


if __name__ == "__main__":
    main()
