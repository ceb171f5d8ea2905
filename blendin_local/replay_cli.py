"""``blendin-local replay``: where in this answer would the guide step in, and what would it change?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli_options import decoding_options, model_options, pair_from_options, settings_from_options
from .errors import UsageError
from .prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from .replay import ReplayRow, replay


def _read_items(prompt: str | None, continuation: str | None, from_trace: str | None,
                jsonl: str | None) -> list[tuple[str, list[int] | str]]:
    given = [x is not None for x in (continuation, from_trace, jsonl)]
    if sum(given) != 1:
        raise UsageError("give exactly one of --continuation, --from-trace or --jsonl")
    if jsonl is not None:
        items: list[tuple[str, list[int] | str]] = []
        for n, line in enumerate(_lines(jsonl), 1):
            try:
                rec = json.loads(line)
                items.append((str(rec["prompt"]), str(rec["continuation"])))
            except (ValueError, KeyError, TypeError):
                raise UsageError(
                    f"{jsonl}:{n}: expected a JSON object with 'prompt' and 'continuation'"
                ) from None
        return items
    if not prompt or not prompt.strip():
        raise UsageError("the prompt is empty")
    if from_trace is not None:
        ids = []
        for n, line in enumerate(_lines(from_trace), 1):
            try:
                ids.append(int(json.loads(line)["token"]))
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{from_trace}:{n}: not a --trace record with a 'token'") from None
        return [(prompt, ids)]
    assert continuation is not None
    return [(prompt, continuation)]


def _lines(path: str) -> list[str]:
    try:
        return [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


@click.command("replay")
@click.argument("prompt", required=False)
@click.option("--continuation", default=None, help="The answer text to walk along.")
@click.option("--from-trace", type=click.Path(dir_okay=False), default=None,
              help="A --trace JSONL from `generate`: replay its exact token ids.")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None,
              help="A JSONL file of {prompt, continuation} objects.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write one JSONL record per step here.")
@click.option("--stepwise", is_flag=True,
              help="Evaluate one token at a time as generate does (bit-identical, slower).")
@click.option("--system", default=REFERENCE_SYSTEM, show_default=True)
@click.option("--chat/--no-chat", default=True, show_default=True)
@model_options
@decoding_options
def replay_command(prompt: str | None, continuation: str | None, from_trace: str | None,
                   jsonl: str | None, out: str | None, stepwise: bool, system: str, chat: bool,
                   **opts: Any) -> None:
    """Show, step by step along an existing answer, where the method would intervene, with what
    α, and which token it would choose."""
    from rich.console import Console
    from rich.table import Table

    items = _read_items(prompt, continuation, from_trace, jsonl)
    settings = settings_from_options(opts)
    try:
        out_file = open(out, "w", encoding="utf-8") if out else None  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out}: {exc.strerror}") from None
    pair = pair_from_options(opts, [settings.method])
    console = Console()
    try:
        for item, (question, cont) in enumerate(items):
            conv = Conversation.single(question, system=system, plain=QA_FORMAT, chat=chat)
            table = Table(title=f"replay [{settings.method}, γ={settings.gamma}] item {item}")
            for col in ("#", "token", "b", "gate", "g", "α", "would pick", "match"):
                table.add_column(col)
            rows: list[ReplayRow] = []
            for row in replay(pair, conv, settings, cont, batched=not stepwise):
                rows.append(row)
                if out_file is not None:
                    out_file.write(json.dumps({"item": item, **row.to_record()},
                                              ensure_ascii=False) + "\n")
                    out_file.flush()
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
    finally:
        if out_file is not None:
            out_file.close()
