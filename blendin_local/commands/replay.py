"""``blendin-local replay``: where in this answer would the guide step in, and what would it change?"""

from __future__ import annotations

import json
from typing import Any

import click

from ..cli_options import (
    decoding_options,
    model_options,
    pair_from_options,
    settings_from_options,
)
from ..engines import server_of
from ..engines.remote.engine import RemoteSpec
from ..engines.remote.scoring import PromptScorer
from ..errors import UsageError
from ..fileio import StreamingOutput, streaming_output
from ..pair import ModelPair
from ..params import TEXT
from ..prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from ..replay.teacher_forcing import ReplayRow, replay
from ..settings import GenerationSettings
from ..textin import read_text_file


def _read_items(prompt: str | None, continuation: str | None, from_trace: str | None,
                jsonl: str | None) -> list[tuple[str, list[int] | str]]:
    given = [x is not None for x in (continuation, from_trace, jsonl)]
    if sum(given) != 1:
        raise UsageError("give exactly one of --continuation, --from-trace or --jsonl")
    if jsonl is not None:
        if prompt is not None:
            raise UsageError("--jsonl holds the prompts: give no PROMPT with it")
        items: list[tuple[str, list[int] | str]] = [
            _jsonl_item(jsonl, n, line) for n, line in _lines(jsonl)
        ]
        if not items:
            raise UsageError(f"--jsonl {jsonl} holds no items")
        return items
    if not prompt or not prompt.strip():
        raise UsageError("the prompt is empty")
    if from_trace is not None:
        ids = [_trace_token(from_trace, n, line) for n, line in _lines(from_trace)]
        return [(prompt, ids)]
    assert continuation is not None
    return [(prompt, continuation)]


def _jsonl_item(path: str, n: int, line: str) -> tuple[str, str]:
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        raise UsageError(f"{path}:{n}: expected a JSON object with 'prompt' and 'continuation'")
    for key in ("prompt", "continuation"):
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{path}:{n}: {key!r} must be a non-empty string, got {value!r}")
    return rec["prompt"], rec["continuation"]


def _trace_token(path: str, n: int, line: str) -> int:
    """A --trace record's token id: a JSON integer (range checked against the vocabulary later)."""
    try:
        token = json.loads(line)["token"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path}:{n}: not a --trace record with a 'token'") from None
    if not isinstance(token, int) or isinstance(token, bool) or token < 0:
        raise UsageError(f"{path}:{n}: 'token' must be a token id (an integer >= 0), "
                         f"got {json.dumps(token)}")
    return token


def is_remote_spec(opts: dict[str, Any]) -> bool:
    return RemoteSpec.is_remote(opts.get("base") or "")


def _lines(path: str) -> list[tuple[int, str]]:
    """Numbered non-blank lines of a UTF-8 text file."""
    text = read_text_file(path)
    return [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]


@click.command("replay")
@click.argument("prompt", type=TEXT, required=False)
@click.option("--continuation", type=TEXT, default=None, help="The answer text to walk along.")
@click.option("--from-trace", type=click.Path(dir_okay=False), default=None,
              help="A --trace JSONL from `generate`: replay its exact token ids.")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None,
              help="A JSONL file of {prompt, continuation} objects.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write one JSONL record per step here.")
@click.option("--stepwise", is_flag=True,
              help="Evaluate one token at a time as generate does (bit-identical, slower); with "
                   "a base on a server, one request per step instead of one for the whole text.")
@click.option("--system", type=TEXT, default=REFERENCE_SYSTEM, show_default=True)
@click.option("--chat/--no-chat", default=True, show_default=True)
@model_options
@decoding_options
def replay_command(prompt: str | None, continuation: str | None, from_trace: str | None,
                   jsonl: str | None, out: str | None, stepwise: bool, system: str, chat: bool,
                   **opts: Any) -> None:
    """Show, step by step along an existing answer, where the method would intervene, with what
    α, and which token it would choose."""
    from rich.console import Console

    items = _read_items(prompt, continuation, from_trace, jsonl)
    settings = settings_from_options(opts)
    if from_trace is not None and (settings.support == "top100" or is_remote_spec(opts)):
        raise UsageError("--from-trace replays token ids; --support top100 and a base on a server "
                         "replay text: give --continuation or --jsonl")
    with streaming_output(out, "--out") as out_file:  # the file is replaced on success only
        pair = pair_from_options(opts, [settings.method])
        _show(pair, items, settings, system, chat, stepwise, out_file, Console())


def _show(pair: ModelPair, items: list[tuple[str, list[int] | str]], settings: GenerationSettings,
          system: str, chat: bool, stepwise: bool, out_file: StreamingOutput | None,
          console: Any) -> None:
    from rich.table import Table

    base = pair.base
    scorer = PromptScorer(server_of(base)) if base and not base.capabilities.dense_logits else None
    for item, (question, cont) in enumerate(items):
        conv = Conversation.single(question, system=system, plain=QA_FORMAT, chat=chat)
        table = Table(title=f"replay ({settings.method}, {settings.support}, "
                            f"γ={settings.gamma:g}) item {item}")
        for col in ("#", "token", "b", "gate", "g", "α", "would pick", "match"):
            table.add_column(col)
        rows: list[ReplayRow] = []
        for row in replay(pair, conv, settings, cont, batched=not stepwise, scorer=scorer):
            rows.append(row)
            if out_file is not None:
                out_file.write(json.dumps({"item": item, **row.to_record()},
                                          ensure_ascii=False) + "\n")
            table.add_row(
                str(row.index), repr(row.text), f"{row.b:.3f}",
                "guide" if row.intervened else "-",
                f"{row.g:.3f}" if row.g is not None else "",
                f"{row.alpha:.2f}" if row.alpha is not None else "",
                repr(row.chosen_text), "yes" if row.matches else "[bold red]no[/]",
            )
        console.print(table)
        n = len(rows)
        inter = sum(r.intervened for r in rows)
        same = sum(r.matches for r in rows)
        changed = sum(r.provenance == "blend-guide" for r in rows)
        console.print(f"{n} steps: the gate opens at {inter} ({100 * inter / n:.0f}%), the "
                      f"guide would change {changed} token(s); {same}/{n} picks equal the "
                      f"continuation.")
        for role, engine in (("base", pair.base), ("guide", pair.guide)):
            report = engine.report() if engine is not None else None
            if engine is not None and report is not None:
                how = f" ({scorer.mode})" if role == "base" and scorer is not None else ""
                console.print(f"{role} server {engine.where}: {report['requests']} "
                              f"request(s) so far{how}")


command = replay_command
