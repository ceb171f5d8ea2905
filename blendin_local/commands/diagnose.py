"""``blendin-local diagnose``: will this guide help this base? (sample prompts, a table, a verdict
and a figure)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..cli_options import model_options, pair_from_options
from ..errors import UsageError
from ..evaluation.datasets import TASK_NAMES, load_items
from ..evaluation.runner import parse_gammas
from ..fileio import path_error
from ..params import Limited
from .eval import _bad_row, _console


@click.command("diagnose")
@model_options
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sample prompts from this benchmark file (needs --task) instead of built-ins.")
@click.option("--task", type=click.Choice(TASK_NAMES), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=6, show_default=True,
              help="Number of sample prompts.")
@click.option("--max-tokens", type=Limited("max_tokens"), default=64, show_default=True,
              help="Tokens per sample answer.")
@click.option("--gamma", type=Limited("gamma"), default=0.4,
              show_default=True, help="The γ the verdict is about.")
@click.option("--gammas", default="0.1,0.2,0.3,0.4,0.5,0.6,0.8", show_default=True,
              help="γ values for the intervention-rate table.")
@click.option("--on-bad-row", type=click.Choice(["skip", "fail"]), default="skip",
              show_default=True)
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("diagnose.png"), show_default=True, help="Where to write the PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def diagnose_command(data: Path | None, task: str | None, limit: int, max_tokens: int,
                     gamma: float, gammas: str, on_bad_row: str, figure_path: Path,
                     as_json: bool, **opts: Any) -> None:
    """Will this guide help this base? Vocabulary coverage, base confidence, intervention rate
    by γ and base–guide agreement on sample prompts, with a verdict in plain words.

    Each sample prompt is answered once with every step blended (γ=2, auto α); the rate at a γ is
    the share of those steps where the base's top-1 probability is below γ.
    """
    import json

    from ..evaluation.diagnose import SAMPLE_PROMPTS, diagnose, figure

    if (data is None) != (task is None):
        raise UsageError("--data and --task go together (or give neither for built-in prompts)")
    gamma_list = sorted(set(parse_gammas(gammas, "--gammas")) | {gamma})
    if data is not None and task is not None:
        prompts = [it.prompt for it in load_items(data, task, on_bad_row=on_bad_row, limit=limit,
                                                  report=_bad_row)]
    else:
        prompts = list(SAMPLE_PROMPTS[:limit])
    pair = pair_from_options(opts, ["blendin"])
    assert pair.base is not None and pair.guide is not None
    with _console(stderr=True).status("answering sample prompts") as status:
        d = diagnose(pair, prompts, max_tokens=max_tokens, gamma=gamma,
                     on_prompt=lambda i: status.update(f"answered {i}/{len(prompts)} prompts"))
    title = f"{pair.base.name} + guide {pair.guide.name}"
    # The report first: a figure that cannot be written must not lose it.
    if as_json:
        click.echo(json.dumps({**d.to_dict(gamma_list), "figure": str(figure_path)}, indent=2,
                              ensure_ascii=False))
    else:
        _print_diagnosis(d, gamma_list, title, figure_path)
    sys.stdout.flush()
    try:
        figure_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error("--figure", figure_path.parent, exc, action="create") from None
    figure(d, figure_path, gamma_list, title)


def _print_diagnosis(d: Any, gammas: list[float], title: str, figure_path: Path) -> None:
    echo = click.echo
    echo(f"pair: {title}")
    cov = ", ".join(f"{'<0.1' if 0 < v < 0.05 else f'{v:.1f}'}% {k}"
                    for k, v in d.coverage.items())
    echo(f"vocabulary: {'shared tokenizer' if d.identity else cov or 'unknown (a model on a server)'}")
    echo(f"sample: {d.prompts} prompts, {len(d.steps)} steps, every step blended (γ=2, auto α); "
         "rates below are along that trajectory")
    q = d.confidence_quantiles()
    if q:
        echo("base top-1 probability: " + "  ".join(
            f"{k.replace('p', '')}%≤{v:.2f}" if k != "p50" else f"median {v:.2f}"
            for k, v in q.items()))
    echo(f"{'γ':>5}  {'interv. rate':>12}  {'overlap@10':>10}  {'overlap@100':>11}  "
         f"{'guide changed':>13}")
    for g in gammas:
        a = d.at(g)
        o10 = "-" if a["overlap10"] is None else f"{a['overlap10']:.2f}"
        o100 = "-" if a["overlap100"] is None else f"{a['overlap100']:.2f}"
        ch = "-" if a["guide_changed"] is None else f"{100 * a['guide_changed']:.0f}%"
        mark = " ←" if g == d.gamma else ""
        echo(f"{g:>5g}  {100 * a['rate']:>11.1f}%  {o10:>10}  {o100:>11}  {ch:>13}{mark}")
    headline, reasons = d.verdict()
    echo(f"verdict: {headline}: " + "; ".join(reasons) + ".")
    for note in d.approximations():
        echo(f"approximation: {note}")
    echo(f"figure: {figure_path}")


command = diagnose_command
