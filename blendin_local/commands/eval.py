"""``blendin-local eval`` (imported lazily by the CLI; ``diagnose`` shares its helpers)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..cli_options import (
    decoding_options,
    model_options,
    pair_from_options,
    settings_from_options,
)
from ..engines.remote.engine import RemoteError
from ..evaluation.datasets import TASK_NAMES, BadRow, load_items
from ..evaluation.records import RecordStore, check_manifest
from ..evaluation.runner import (
    build_grid,
    parse_alphas,
    parse_batch,
    parse_gammas,
    parse_methods,
    plan_keys,
    run_plan,
)
from ..fileio import write_text_atomically
from ..models import default_model
from ..params import TEXT
from ..prompts import REFERENCE_SYSTEM

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130
GRID_OPTIONS = ("method", "gamma", "alpha")  # eval takes lists of these instead


def shared_decoding_options(f: F) -> F:
    """The shared decoding options except --method/--gamma/--alpha, which eval takes as lists."""

    def probe() -> None: ...

    decoding_options(probe)
    params = [p for p in getattr(probe, "__click_params__", []) if p.name not in GRID_OPTIONS]
    f.__click_params__ = getattr(f, "__click_params__", []) + params  # type: ignore[attr-defined]
    return f


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _bad_row(bad: BadRow) -> None:
    _warn(f"skipped bad row {bad}")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160, highlight=False)


@click.command("eval")
@click.option("--data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The benchmark file, in the dataset's published format.")
@click.option("--task", required=True, type=click.Choice(TASK_NAMES),
              help="How to read and score it.")
@click.option("--methods", default="base,guide,blendin", show_default=True,
              help="Comma-separated methods to compare.")
@click.option("--gamma", "gammas", default="0.4", show_default=True,
              help="Comma-separated γ values (methods blendin and nudging).")
@click.option("--alpha", "alphas", default="auto", show_default=True,
              help="Comma-separated α values, 'auto' or numbers in [0, 1] (method blendin).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use the first N well-formed items.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: records.jsonl (resumable), summary.csv/.md, plots.")
@click.option("--on-bad-row", type=click.Choice(["skip", "fail"]), default="skip",
              show_default=True, help="A malformed data row: report and skip it, or stop.")
@click.option("--system", type=TEXT, default=REFERENCE_SYSTEM, show_default=True,
              help="System prompt.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures.")
@click.option("--batch", default=None, metavar="N",
              help="Answers decoded together (one llama_decode per token for all of them; each "
                   "holds its own KV cache of --n-ctx tokens). Default: 8, or fewer if their KV "
                   "caches would take over half the available memory.")
@model_options
@shared_decoding_options
def eval_command(data: Path, task: str, methods: str, gammas: str, alphas: str, limit: int | None,
                 out: Path, on_bad_row: str, system: str, plots: bool, batch: str | None,
                 **opts: Any) -> None:
    """Score methods on a benchmark file; re-running the same command resumes where it stopped.

    One JSONL record per (method, setting, item) is written as soon as it exists, so Ctrl-C
    loses at most the answers in flight (--batch of them). Example:

    \b
      blendin-local eval --task gsm8k --data test.jsonl \\
        --methods base,guide,blendin --gamma 0.2,0.3,0.4 --limit 100 --out runs/gsm8k
    """
    batch_size = parse_batch(batch)
    method_list = parse_methods(methods)
    grid = build_grid(method_list, parse_gammas(gammas), parse_alphas(alphas))
    base_settings = settings_from_options({**opts, "method": "blendin", "gamma": 0.4,
                                           "alpha": "auto"})
    items = load_items(data, task, on_bad_row=on_bad_row, limit=limit, report=_bad_row)
    config = {
        "task": task,
        "base": opts.get("base") or default_model("base"),
        "guide": opts.get("guide") or default_model("guide"),
        "anti_expert": opts.get("anti"),
        "system": system,
        **{k: v for k, v in base_settings.to_dict().items() if k not in GRID_OPTIONS},
        "stop": list(base_settings.stop),
    }
    check_manifest(out, config, info={"data": str(data)})
    store = RecordStore(out, warn=_warn)
    keys = plan_keys(grid, items)
    todo = [k for k in keys if k not in store]
    try:
        if todo:
            _run_with_progress(task, items, grid, store, base_settings, opts, system, batch_size,
                               done=len(keys) - len(todo), total=len(keys))
        else:
            click.echo(f"all {len(keys)} answers already in {store.path}; summarising", err=True)
    except RemoteError as exc:  # a server died or failed mid-run: say what is kept
        store.close()
        raise RemoteError(f"{exc}; {len(store.select(keys))} of {len(keys)} answers are saved in "
                          f"{store.path}: run the same command again to resume") from None
    except KeyboardInterrupt:
        store.close()
        click.echo(f"\ninterrupted: {len(store.select(keys))} of {len(keys)} answers are saved in "
                   f"{store.path}; run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    store.close()
    _report(task, data, grid, store, keys, out, plots, config)


def _run_with_progress(task: str, items: list[Any], grid: list[Any], store: RecordStore,
                       base_settings: Any, opts: dict[str, Any], system: str,
                       batch: int | None, *, done: int, total: int) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    need = sorted({k[0] for k in plan_keys(grid, items) if k not in store})
    position = {it.id: i for i, it in enumerate(items, start=1)}
    right = {"n": 0, "ok": 0}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.fields[score]}"), console=_console(stderr=True), transient=False,
    ) as progress:
        bar = progress.add_task("loading models", total=total, completed=done, score="")

        def before(setting: Any, item: Any) -> None:
            progress.update(bar, description=f"{setting.label} · item {position[item.id]}"
                                             f"/{len(items)}")

        def after(record: dict[str, Any]) -> None:
            right["n"] += 1
            right["ok"] += bool(record.get("correct"))
            progress.update(bar, advance=1, score=f"this run: {right['ok']}/{right['n']} right")

        run_plan(task, items, grid, store, base_settings=base_settings,
                 load_pair=lambda: pair_from_options(opts, need), system=system, batch=batch,
                 before=before, after=after, note=_warn)
        progress.update(bar, description="done")


def _report(task: str, data: Path, grid: list[Any], store: RecordStore, keys: list[Any],
            out: Path, plots: bool, config: dict[str, Any]) -> None:
    from ..evaluation.summary import summarise, to_csv, to_markdown, to_rich_table

    rows, by_label = [], {}
    for setting in grid:
        recs = store.select(k for k in keys if k[:2] == (setting.method, setting.key))
        if recs:
            rows.append(summarise(setting, recs, task))
            by_label[setting.label] = recs
    title = (f"{task} · {data.name} · base {config['base']} · guide {config['guide']} · "
             f"max {config['max_tokens']} tokens")
    console = _console()
    console.print(to_rich_table(rows, task, title))
    write_text_atomically(out / "summary.csv", to_csv(rows), "--out")
    write_text_atomically(out / "summary.md", f"**{title}**\n\n" + to_markdown(rows, task),
                          "--out")
    written = [out / "summary.csv", out / "summary.md"]
    if plots and rows:
        from ..evaluation.plots import eval_plots

        written += eval_plots(rows, by_label, out, task)
    click.echo("wrote " + ", ".join(str(p) for p in written), err=True)



command = eval_command
