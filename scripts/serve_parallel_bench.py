"""``serve --parallel``: throughput and time to first token, measured through the real server.

For each --parallel value: starts ``blendin-local serve`` (the default pair, fresh KV caches, greedy)
on a loopback port, warms it up, then

1. 8 streamed clients at once × ``--max-tokens`` tokens: aggregate tok/s (completion tokens of all
   answers over the wall time from the first request to the last ``[DONE]``);
2. the time to first token (TTFT) of a lone request (median of 3);
3. the TTFT of a request sent once 7 others are streaming (as many tokens each, so they are
   still running when it arrives), and whether it finished before all of them.

It prints the numbers with the load average, and how many of the 8 answers are the same text at
every --parallel value (batched arithmetic may move near-ties, spec §11).

Usage (from the repository root, models fetched):
    .venv/bin/python scripts/serve_parallel_bench.py --parallel 1 8 --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

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


def stream(url: str, question: str, max_tokens: int, out: Answer) -> None:
    body = {"model": "blendin", "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    out.sent = time.monotonic()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                out.tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                piece = choice["delta"].get("content")
                if piece:
                    out.first = out.first or time.monotonic()
                    out.text += piece
    out.done = time.monotonic()


def in_thread(url: str, question: str, max_tokens: int) -> tuple[threading.Thread, Answer]:
    answer = Answer()
    thread = threading.Thread(target=stream, args=(url, question, max_tokens, answer), daemon=True)
    thread.start()
    return thread, answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(parallel: int, n_ctx: int, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/blendin-local"), "serve", "--port", str(port), "--fresh-cache",
           "--parallel", str(parallel), "--n-ctx", str(n_ctx), "--threads", str(threads),
           "--queue-timeout", "3600", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "BLENDIN_API_KEY"}
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


def measure(parallel: int, max_tokens: int, n_ctx: int, threads: int) -> dict[str, object]:
    proc, url = serve(parallel, n_ctx, threads, Path(f"/tmp/serve_parallel_{parallel}.log"))
    try:
        stream(url, "Hello!", 8, Answer())  # warm-up
        # 1. 8 clients at once
        t0 = time.monotonic()
        runs = [in_thread(url, q, max_tokens) for q in QUESTIONS]
        for thread, _ in runs:
            thread.join()
        wall = time.monotonic() - t0
        answers = [a for _, a in runs]
        tokens = sum(a.tokens for a in answers)
        print(f"--parallel {parallel}: {tokens} tokens in {wall:.1f} s", flush=True)
        # 2. a lone request
        lone = []
        for _ in range(3):
            a = Answer()
            stream(url, QUESTIONS[0], 8, a)
            lone.append(a.ttft)
        # 3. a request arriving while 7 run
        busy = [in_thread(url, q, max_tokens) for q in QUESTIONS[1:]]
        # all 7 sent, and as many streaming as can (at --parallel 1: one runs, six wait)
        while not (all(a.sent for _, a in busy)
                   and sum(a.first is not None for _, a in busy) >= min(parallel, 7)):
            time.sleep(0.01)
        late = Answer()
        stream(url, QUESTIONS[0], 8, late)
        others_done = sum(1 for _, a in busy if a.done is not None)
        for thread, _ in busy:
            thread.join()
        return {"parallel": parallel, "tokens": tokens, "wall_s": round(wall, 2),
                "tok_s": round(tokens / wall, 1), "texts": [a.text for a in answers],
                "ttft_lone_s": round(statistics.median(lone), 3),
                "ttft_while_7_run_s": round(late.ttft, 3),
                "of_7_done_before_it_ended": others_done}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print("load average before:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    results = [measure(p, args.max_tokens, args.n_ctx, args.threads) for p in args.parallel]
    for r in results:
        shown = {k: v for k, v in r.items() if k != "texts"}
        print(json.dumps(shown))
    first = results[0]["texts"]
    assert isinstance(first, list)
    same = sum(all(r["texts"][i] == first[i] for r in results) for i in range(len(first)))  # type: ignore[index]
    print(f"answers with the same text at every --parallel: {same} of {len(first)}")
    for i, text in enumerate(first):
        for r in results[1:]:
            other = r["texts"][i]  # type: ignore[index]
            if other != text:
                common = os.path.commonprefix([text, other])
                print(f"  answer {i}: --parallel {r['parallel']} agrees on the first {len(common)} of "
                      f"{len(text)} / {len(other)} characters")
    print("load average after:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
