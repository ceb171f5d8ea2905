"""What a streamed token and a one-token request cost on llama-server (issue 18), by server threads
and logprobs asked, directly and through the bench's delay proxy.

Starts llama-server (``--threads`` each, one after another) with the default base, streams 24
tokens with 100 / 5 / 1 / no logprobs (median gap between positions as the client sees them, and
the server's own ms per token from its ``timings``), then times one-token requests with 100
logprobs re-sending the text, direct and at each ``--rtt``.

    .venv/bin/python scripts/llama_server_stream_cost.py --threads 1,2 --rtt 0,20
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from blendin_local.engines.remote.native_server import find_llama_server, llama_server
from blendin_local.engines.remote.netem import delay_proxy, through
from blendin_local.engines.remote.shapes import stream_chunks
from blendin_local.models import default_model, resolve_model

PROMPT = ("Question: A farmer has 12 cows and buys 7 more. Each cow gives 3 litres of milk a day. "
          "How much milk a day?\nAnswer:")


def stream(client: httpx.Client, url: str, n: int, logprobs: int | None) -> tuple[list[float], float | None]:
    """Arrival times (s) of each streamed position, and the server's ms per predicted token."""
    body: dict[str, object] = {"model": "base", "prompt": PROMPT, "max_tokens": n, "temperature": 0,
                               "stream": True, "repeat_penalty": 1.0}
    if logprobs is not None:
        body["logprobs"] = logprobs
    t0, times, server_ms = time.perf_counter(), [], None
    with client.stream("POST", f"{url}/completions", json=body) as response:
        for data in stream_chunks(response.iter_lines()):
            server_ms = data.get("timings", {}).get("predicted_per_token_ms", server_ms)
            if data.get("choices") and data["choices"][0].get("text"):
                times.append(time.perf_counter() - t0)
    return times, server_ms


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="llama-server -t values, comma-separated")
    parser.add_argument("--rtt", default="0,20", help="round trip times (ms) for one-token requests")
    args = parser.parse_args()
    binary, model = find_llama_server(None), resolve_model(default_model("base"))
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_keepalive_connections=0))
    for threads in (int(t) for t in args.threads.split(",")):
        with llama_server(binary, model, "base", threads=threads) as url:
            stream(client, url, 4, 100)  # the prompt evaluated once
            for logprobs in (100, 5, 1, None):
                times, server_ms = stream(client, url, 24, logprobs)
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                print(f"-t {threads} streamed, logprobs {logprobs}: gap {median_ms(gaps)} ms, "
                      f"server {server_ms and round(server_ms, 1)} ms/token")
            for rtt in (float(r) for r in args.rtt.split(",")):
                with delay_proxy(url, rtt) as proxy:
                    routed = through(url, proxy)
                    waits = [stream(client, routed, 1, 100)[0][0] for _ in range(12)]
                print(f"-t {threads} one-token request, logprobs 100, RTT {rtt:g} ms: {median_ms(waits)} ms")
    client.close()


if __name__ == "__main__":
    main()
