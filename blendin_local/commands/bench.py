"""``blendin-local bench``: speed and memory of every method against spec §8's targets."""

from __future__ import annotations

import json
from typing import Any

import click

from ..bench import print_report, run_bench
from ..cli_options import model_options, pair_from_options, refuse_remote_base


@click.command("bench")
@model_options
@click.option("--max-tokens", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--chat", "chat", is_flag=True,
              help="Instead: time to first token of a 5-turn chat (~1 500-token history) with "
                   "fresh caches and with KV reuse.")
def bench_command(max_tokens: int, rounds: int, as_json: bool, chat: bool, **opts: Any) -> None:
    """Speed and memory of every method against spec §8's targets, measured in one run."""
    refuse_remote_base(opts)
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
