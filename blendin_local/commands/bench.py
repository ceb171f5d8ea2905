"""``blendin-local bench``: speed and memory of every method against spec §8's targets; with the
base on a server, our chunked requests against one request per token, side by side."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

import click

from ..bench import print_report, run_bench
from ..cli_options import model_options, pair_from_options
from ..errors import UsageError
from ..params import Limited


@click.command("bench")
@model_options
@click.option("--max-tokens", type=Limited("bench_max_tokens"), default=None,
              help="Tokens per answer  [default: 64; 128 with --throughput]")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--chat", "chat", is_flag=True,
              help="Instead: time to first token of a 5-turn chat (~1 500-token history) with "
                   "fresh caches and with KV reuse.")
@click.option("--remote-native", type=click.Choice(["base", "pair"]), default=None,
              help="Serve the base (or base and guide) with llama.cpp's llama-server on loopback "
                   "for this run, then bench the remote loops (see --base URL#MODEL).")
@click.option("--throughput", is_flag=True,
              help="Instead: aggregate tokens/s of 8 answers decoded 1, 4 and 8 at a time "
                   "(base, blendin) beside a bare batched decode loop, and peak memory.")
@click.option("--llama-server", "llama_server", default=None, metavar="PATH",
              help="The llama-server executable (`make llama-server`) [env: BLENDIN_LLAMA_SERVER].")
def bench_command(max_tokens: int | None, rounds: int, as_json: bool, chat: bool,
                  remote_native: str | None, throughput: bool, **opts: Any) -> None:
    """Speed and memory of every method against spec §8's targets, measured in one run.

    With the base on a server (--base URL#MODEL, or --remote-native): our chunked requests
    (--remote-chunk K) against one request per token, side by side (issue 10's targets)."""
    from ..engines.remote import RemoteSpec

    if throughput:
        if chat or remote_native or RemoteSpec.is_remote(opts.get("base") or ""):
            raise UsageError("--throughput runs on local models only, without --chat")
        from ..throughput_bench import print_throughput, run_throughput

        report = run_throughput(pair_from_options(opts, ["blendin"]), max_tokens=max_tokens or 128,
                                rounds=rounds)
        click.echo(json.dumps(report, indent=2)) if as_json else print_throughput(report)
        return
    max_tokens = max_tokens or 64
    if remote_native or RemoteSpec.is_remote(opts.get("base") or ""):
        from ..remote_bench import native_servers, print_remote_report, run_remote_bench

        if chat:
            raise UsageError("--chat runs on local models only")
        with native_servers(opts, remote_native) if remote_native else nullcontext(opts) as served:
            remote_report = run_remote_bench(pair_from_options(served, ["blendin"]),
                                             chunk=opts["remote_chunk"], max_tokens=max_tokens,
                                             rounds=rounds)
        if as_json:
            click.echo(json.dumps(remote_report, indent=2))
        else:
            print_remote_report(remote_report)
        return
    pair = pair_from_options(opts, ["blendin"])
    if chat:
        from ..chat_bench import print_chat_report, run_chat_bench

        chat_report = run_chat_bench(pair, max_tokens=max_tokens, rounds=rounds)
        if as_json:
            click.echo(json.dumps(chat_report, indent=2))
        else:
            print_chat_report(chat_report)
        return
    report = run_bench(pair, max_tokens=max_tokens, rounds=rounds)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)


command = bench_command
