"""``blendin-local models``: list, fetch and inspect models."""

from __future__ import annotations

import json
import sys

import click

from ..errors import UsageError


@click.group("models")
def models() -> None:
    """List, fetch and inspect models."""


@models.command("list")
@click.option("--pairs", is_flag=True, help="The recommended base + guide pairs, with RAM and status.")
@click.option("--n-ctx", type=click.IntRange(min=64), default=4096, show_default=True,
              help="Context length the RAM estimate assumes (--pairs).")
def models_list(pairs: bool, n_ctx: int) -> None:
    """The catalog, with where each model lives and whether it is fetched."""
    from ..catalog import load

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
    from .. import hub
    from ..catalog import load
    from ..models import fetch

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
    from ..gguf_info import read_info
    from ..models import resolve_model

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
    from ..models import default_model, load_pair
    from ..projection import KIND_NAMES

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


command = models
