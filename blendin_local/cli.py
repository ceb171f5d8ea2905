"""``blendin-local``: a thin Click layer over the library. Docstrings are the ``--help``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import decoding_options, model_options, pair_from_options, settings_from_options
from .errors import BlendinError, UsageError
from .fileio import streaming_output
from .params import TEXT
from .prompts import QA_FORMAT, REFERENCE_SYSTEM, Conversation
from .settings import GenerationSettings
from .steps import Provenance, Result, Step
from .textin import read_stdin

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
        "doctor": ("blendin_local.doctor", "doctor_command"),
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
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides (to stderr).")
def cli(verbose: bool) -> None:
    """BlendIn inference-time alignment on two local GGUF models.

    A strong unaligned base writes; when it is unsure (top-1 < gamma) a small aligned guide's
    distribution is blended in. Start with `blendin-local generate "Your question"`;
    `blendin-local doctor` checks this machine.
    """
    if verbose:
        import logging

        logging.basicConfig(format="[%(name)s] %(message)s")
        logging.getLogger("blendin_local").setLevel(logging.INFO)


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


@cli.command()
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
    from .generate import generate as start

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


@cli.group()
def models() -> None:
    """List, fetch and inspect models."""


@models.command("list")
@click.option("--pairs", is_flag=True, help="The recommended base + guide pairs, with RAM and status.")
@click.option("--n-ctx", type=click.IntRange(min=64), default=4096, show_default=True,
              help="Context length the RAM estimate assumes (--pairs).")
def models_list(pairs: bool, n_ctx: int) -> None:
    """The catalog, with where each model lives and whether it is fetched."""
    from .catalog import load

    cat = load()
    if pairs:
        for p in cat.pairs.values():
            ram = p.ram_bytes(n_ctx)
            fetched = sum(e.fetched for e in (p.base, p.guide))
            approx = "" if p.base.size_exact and p.guide.size_exact else "~"
            ram_text = f"{approx}{ram / 1e9:.1f} GB" if ram else "?"
            click.echo(f"{p.name:22} {p.base.name} + {p.guide.name}  tokenizer: {p.tokenizer_relation}  "
                       f"RAM {ram_text}")
            click.echo(f"{'':22} {p.note}  [{'fetched' if fetched == 2 else f'{fetched}/2 fetched'}]")
        click.echo(f"RAM = both files + both f16 KV caches at n_ctx={n_ctx}; ~ = sizes as listed on the "
                   "Hub", err=True)
        return
    for e in cat.models.values():
        fetched = e.fetched
        mark = "fetched" if fetched else "not fetched"
        star = " (default " + e.role + ")" if cat.default.get(e.role) == e.name else ""
        size = f"{'' if e.size_exact else '~'}{e.size / 1e6:.0f}"
        template = {True: "yes", False: "no", None: "?"}[e.chat_template]
        click.echo(f"{e.name:24} {e.role:6} {size:>6} MB  {e.tokenizer:8} "
                   f"template={template:3}  {mark}{star}")
        where = e.path if fetched else (e.hf or e.path)
        click.echo(f"{'':24} {e.description}  [{where}]")


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Download Hub files again even when cached.")
def models_fetch(names: tuple[str, ...], force: bool) -> None:
    """Fetch models and verify them (default: the default pair).

    NAMES are catalog names, pair names (`models list --pairs`) or Hub references:
    hf:OWNER/REPO/FILE.gguf, or hf:OWNER/REPO:QUANT for the repository's GGUF of that
    quantisation. Hub files go to huggingface_hub's cache ($HF_HUB_CACHE, $HF_ENDPOINT, $HF_TOKEN).
    """
    from . import hub
    from .catalog import load
    from .models import fetch

    cat = load()
    chosen: list[str] = []
    for name in names or tuple(cat.default.values()):
        if name in cat.pairs:
            chosen += [cat.pairs[name].base.name, cat.pairs[name].guide.name]
        elif name in cat.models:
            chosen.append(name)
        elif hub.is_hub_ref(name):
            chosen.append(str(hub.parse_ref(name)))
        else:
            raise UsageError(f"unknown model {name!r} (known: {', '.join(sorted(cat.models))}; "
                             f"pairs: {', '.join(cat.pairs)}; or hf:OWNER/REPO/FILE.gguf)")
    progress = sys.stderr.isatty()  # else quiet: a failure is then exactly one line

    def log(message: str) -> None:
        if progress:
            click.echo(message, err=True)

    for name in chosen:
        if name in cat.models:
            path = fetch(cat.models[name], log=log, force=force, progress=progress)
        else:
            path = hub.fetch(name, force=force, progress=progress, log=log)
        click.echo(f"{name}: {path} (checksum ok)")


@models.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
def models_info(model: str, as_json: bool) -> None:
    """Metadata of MODEL (catalog name or GGUF path), read from the GGUF header."""
    from .gguf_info import read_info
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
        sys.stdout.flush()  # a full disk under stdout shows here, not as noise at exit
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
    except OSError as exc:  # our own files are named by fileio.path_error; this is stdout
        _silence_stdout()
        click.echo(f"error: cannot write the output: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing what is left at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()


__all__ = ["cli", "main", "Path"]
