"""``blendin-local generate``: one answer, streamed (coloured with --show), as JSON, or traced."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..cli_options import decoding_options, model_options, pair_from_options, settings_from_options
from ..errors import UsageError
from ..fileio import streaming_output
from ..generation.steps import Provenance, Result, Step
from ..params import TEXT
from ..prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from ..settings import GenerationSettings
from ..textin import read_stdin

STYLE: dict[Provenance, dict[str, Any]] = {
    Provenance.BASE: {},
    Provenance.BLEND_AGREE: {"fg": "cyan"},
    Provenance.BLEND_GUIDE: {"fg": "magenta", "bold": True},
    Provenance.GUIDE: {"fg": "yellow"},
}
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT



def read_prompt(prompt: str) -> str:
    text = read_stdin("the prompt (stdin)") if prompt == "-" else prompt
    if not text.strip():
        raise UsageError("the prompt is empty")
    return text


def summary_line(r: Result) -> str:
    rate = f"{100 * r.intervention_rate:.0f}%"
    alpha = f"{r.mean_alpha:.2f}" if r.mean_alpha is not None else "-"
    what = "guide call" if r.interventions_are_events else "intervention"
    what += "" if r.interventions == 1 else "s"
    return (
        f"[{r.method}] {r.tokens} tokens, {r.interventions} {what} ({rate}), "
        f"guide changed {r.guide_changed}, mean α {alpha}, {r.tokens_per_s:.1f} tok/s, "
        f"stop: {r.stop_reason.value if r.stop_reason else 'running'}"
    )


@click.command("generate")
@click.argument("prompt", type=TEXT)
@model_options
@decoding_options
@click.option("--system", type=TEXT, default=REFERENCE_SYSTEM, show_default=True, help="System prompt.")
@click.option("--chat/--no-chat", default=True, show_default=True,
              help="Wrap the prompt in each model's chat template (plain Question/Answer format "
                   "for a base without one); --no-chat continues the raw text.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary instead of streaming.")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Write one JSONL record per generated token to this file.")
@click.option("--show", is_flag=True,
              help="Colour tokens by who chose them: base, blend (guide agreed), guide changed.")
def generate(prompt: str, system: str, chat: bool, as_json: bool, trace: str | None, show: bool,
             **opts: Any) -> None:
    """Generate an answer to PROMPT (use - to read it from stdin)."""
    from ..generation.generate import generate as start

    text = read_prompt(prompt)
    settings = settings_from_options(opts, diagnostics=trace is not None)
    with streaming_output(trace, "--trace") as trace_out:  # the file is replaced on success only
        pair = pair_from_options(opts, [settings.method])
        conv = Conversation.single(text, system=system, plain=QA_FORMAT, chat=chat)
        gen = start(pair, conv, settings)
        colour = show and not as_json  # click drops the colours when stdout is not a terminal
        try:
            for step in gen:
                if trace_out is not None:
                    trace_out.write(json.dumps(step.to_record(), ensure_ascii=False) + "\n")
                if not as_json:
                    _echo_step(step, colour)
        except KeyboardInterrupt:
            _finish(gen.result, settings, as_json, show)
            sys.exit(EXIT_INTERRUPTED)
        _finish(gen.result, settings, as_json, show)


def _echo_step(step: Step, colour: bool) -> None:
    if colour and step.text:
        click.echo(click.style(step.text, **STYLE[step.provenance]), nl=False)
    else:
        click.echo(step.text, nl=False)
    sys.stdout.flush()


def _finish(result: Result, settings: GenerationSettings, as_json: bool, show: bool) -> None:
    if as_json:
        summary = {**result.to_dict(), "settings": settings.to_dict()}
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    click.echo()
    if show:
        legend = " ".join(click.style(p.value, **STYLE[p]) for p in Provenance)
        click.echo(f"legend: {legend}", err=True)
    click.echo(summary_line(result), err=True)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)


command = generate
