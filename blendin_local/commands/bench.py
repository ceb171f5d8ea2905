"""``blendin-local bench``: speed and memory of every method against spec §8's targets; with the
base on a server, our chunked requests against one request per token, side by side."""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from typing import Any

import click

from ..bench.anchor import Anchor
from ..bench.speed import print_report, run_bench
from ..cli_options import model_options, pair_from_options
from ..errors import UsageError
from ..params import Limited


def _rtts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        rtts = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--rtt: {value!r} is not a comma-separated list of milliseconds") from None
    if any(r < 0 or r != r for r in rtts):
        raise UsageError(f"--rtt: {value!r}: a round trip time is a number of milliseconds >= 0")
    return rtts


def _remote_bench(opts: dict[str, Any], native: str | None, pin: bool, bench: dict[str, Any]
                  ) -> dict[str, Any]:
    """The remote bench on shared cores, then (``pin``, two cores or more) with the server on its
    own cores and the client on the others."""
    from ..bench.remote import native_servers, pinned, run_remote_bench, shared_threads, split_cores
    from ..engines import servers

    methods = [bench["method"]]
    kwargs = {"chunk": opts["remote_chunk"], "max_tokens": bench["max_tokens"], "rounds": bench["rounds"],
              "rtts": bench["rtts"], "method": bench["method"], "questions": bench["questions"]}
    client_threads, server_threads = shared_threads(opts.get("threads"))
    with native_servers(opts, native, threads=server_threads) if native else nullcontext(opts) as served:
        report = run_remote_bench(pair_from_options({**served, "threads": client_threads}, methods), **kwargs)
    cores = split_cores() if pin else None
    if cores is not None and native:
        client, server = cores
        with native_servers(opts, native, cpus=server, threads=len(server)) as served, pinned(client):
            pair = pair_from_options({**served, "threads": len(client)}, methods)
            for served_model in servers(pair.base, pair.guide):
                served_model.shares_cpu = False  # its own cores: as on another machine
            name = f"server on core(s) {','.join(map(str, sorted(server)))}"
            report["variants"] += run_remote_bench(pair, variant=name, **kwargs)["variants"]
    return report


def _anchor(opts: dict[str, Any]) -> Anchor:
    """llama-server's side of ``--throughput``: the base's GGUF, ``--n-ctx`` per slot, and the
    bench's threads (unset: llama-cpp-python's default, half the cores)."""
    from ..models import default_model, resolve_model

    threads = opts["threads"] or max((os.cpu_count() or 2) // 2, 1)
    return Anchor(model=resolve_model(opts.get("base") or default_model("base")),
                  n_ctx=opts["n_ctx"], threads=threads, binary=opts.get("llama_server"))


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
@click.option("--anchor/--no-anchor", default=True, show_default=True,
              help="With --throughput: also time llama.cpp's own llama-server -np 1 and -np 8 "
                   "holding the base (8 streamed clients), started for the run.")
@click.option("--llama-server", "llama_server", default=None, metavar="PATH",
              help="The llama-server executable (`make llama-server`) [env: BLENDIN_LLAMA_SERVER].")
@click.option("--rtt", "rtts", default="0", show_default=True, metavar="MS[,MS…]", callback=_rtts,
              help="Remote bench: round trip times to add between client and servers (a loopback "
                   "delay proxy), e.g. 0,5,20,50.")
@click.option("--pin-server", is_flag=True,
              help="With --remote-native: also run with the server on its own core(s) and the client "
                   "on the others, as on two machines.")
@click.option("--remote-method", type=click.Choice(["blendin", "nudging"]), default="blendin",
              show_default=True, help="Remote bench: BlendIn top-100, or nudging.")
@click.option("--questions", type=click.IntRange(1, 6), default=6, show_default=True,
              help="Remote bench: the first N of its six questions.")
def bench_command(max_tokens: int | None, rounds: int, as_json: bool, chat: bool,
                  remote_native: str | None, throughput: bool, anchor: bool,
                  rtts: tuple[float, ...], pin_server: bool, remote_method: str, questions: int,
                  **opts: Any) -> None:
    """Speed and memory of every method against spec §8's targets, measured in one run.

    With the base on a server (--base URL#MODEL, or --remote-native): our chunked requests
    (--remote-chunk K) against one request per token, side by side, at each --rtt."""
    from ..engines.remote.engine import RemoteSpec

    if throughput:
        if chat or remote_native or RemoteSpec.is_remote(opts.get("base") or ""):
            raise UsageError("--throughput runs on local models only, without --chat")
        from ..bench.throughput import print_throughput, run_throughput

        report = run_throughput(pair_from_options(opts, ["blendin"]), max_tokens=max_tokens or 128,
                                rounds=rounds, anchor=_anchor(opts) if anchor else None)
        click.echo(json.dumps(report, indent=2)) if as_json else print_throughput(report)
        return
    max_tokens = max_tokens or 64
    if remote_native or RemoteSpec.is_remote(opts.get("base") or ""):
        if chat:
            raise UsageError("--chat runs on local models only")
        if pin_server and not remote_native:
            raise UsageError("--pin-server needs --remote-native (a server this run starts)")
        bench = {"max_tokens": max_tokens, "rounds": rounds, "rtts": rtts, "method": remote_method,
                 "questions": questions}
        remote_report = _remote_bench(opts, remote_native, pin_server, bench)
        if as_json:
            click.echo(json.dumps(remote_report, indent=2))
        else:
            from ..bench.remote import print_remote_report

            print_remote_report(remote_report)
        return
    pair = pair_from_options(opts, ["blendin"])
    if chat:
        from ..bench.chat import print_chat_report, run_chat_bench

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
