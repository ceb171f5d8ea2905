"""Click options shared by every command that loads models or decodes (generate, chat, eval...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .errors import BlendinError, UsageError
from .generation.sampling import SamplingSettings
from .methods import METHODS, needing
from .models import default_model, load_pair
from .pair import ModelPair
from .params import SEED, TEXT, Limited
from .prompts import TEMPLATES
from .settings import COMPATS, SUPPORTS, GenerationSettings, parse_alpha

F = TypeVar("F", bound=Callable[..., Any])
TEMPLATE_CHOICES = ("auto", "plain", *TEMPLATES)


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


model_options = _stack(
    click.option("--base", "base", default=None, metavar="MODEL",
                 help="Base model: catalog name, GGUF path, fetched hf: reference, or an "
                      "OpenAI-compatible server as URL#MODEL [default: the default pair's base]."),
    click.option("--guide", "guide", default=None, metavar="MODEL",
                 help="Guide model: catalog name, GGUF path, fetched hf: reference, or a server "
                      "as URL#MODEL [default: the default pair's guide]."),
    click.option("--anti-expert", "anti", default=None, metavar="MODEL",
                 help="The guide's untuned counterpart (method proxy only)."),
    click.option("--n-ctx", type=click.IntRange(min=64), default=4096, show_default=True,
                 help="Context length of each model."),
    click.option("--n-gpu-layers", type=int, default=-1, show_default=True,
                 help="Layers to offload to the GPU (-1 = all; no effect on a CPU build)."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="CPU threads, for single tokens and batches alike [default: llama.cpp's "
                      "choice: half the cores for single tokens, all for batches]."),
    click.option("--remote-api-key", envvar="BLENDIN_REMOTE_API_KEY", default=None,
                 help="Bearer key sent to a remote model's server (--base http://HOST:PORT/v1#MODEL) "
                      "[env: BLENDIN_REMOTE_API_KEY]."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
                 show_default=True, help="Seconds to wait for a remote model's server."),
    click.option("--remote-chunk", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Tokens asked of a remote base per request while it is confident "
                      "(1 = one request per token, as the reference code)."),
    click.option("--guide-template", type=click.Choice(TEMPLATE_CHOICES), default="auto",
                 show_default=True, help="Chat template of a guide on a server: auto = the "
                 "server's (llama.cpp's /apply-template), else plain with a warning."),
    click.option("--base-template", type=click.Choice(TEMPLATE_CHOICES), default="plain",
                 show_default=True, help="Chat template of a base on a server (plain = the "
                 "reference's Question/Answer format)."),
    click.option("--allow-fewer-logprobs", is_flag=True,
                 help="Run with the alternatives a server allows when it allows fewer than 100 "
                      "(reported in --json) instead of failing."),
)

decoding_options = _stack(
    click.option("--method", type=click.Choice(list(METHODS)), default="blendin", show_default=True,
                 help="Decoding method."),
    click.option("--gamma", type=Limited("gamma"), default=0.4, show_default=True,
                 help="Gate: the guide speaks when the base's top-1 probability < gamma."),
    click.option("--alpha", default="auto", show_default=True,
                 help="Blend weight of the guide: 'auto' or a number in [0, 1]."),
    click.option("--support", type=click.Choice(SUPPORTS), default="full",
                 show_default=True, help="Blend full distributions, or the paper's top-100 strings."),
    click.option("--cap", type=Limited("cap"), default=None,
                 help="Intervention cap: after 20 tokens, stop intervening while the rate >= CAP."),
    click.option("--guide-can-stop/--no-guide-can-stop", default=True, show_default=True,
                 help="Let the guide's end-of-turn end the answer through base EOS."),
    click.option("--max-tokens", type=Limited("max_tokens"), default=256, show_default=True),
    click.option("--temperature", type=Limited("temperature"), default=0.0, show_default=True,
                 help="0 = greedy."),
    click.option("--top-k", type=Limited("top_k"), default=0, show_default=True, help="0 = off."),
    click.option("--top-p", type=Limited("top_p"), default=1.0, show_default=True),
    click.option("--min-p", type=Limited("min_p"), default=0.0, show_default=True),
    click.option("--seed", type=SEED, default=None, help="Seed for sampling (same seed ⇒ same text)."),
    click.option("--stop", type=TEXT, multiple=True, help="Stop string (repeatable)."),
    click.option("--compat", type=click.Choice(COMPATS), default="native", show_default=True,
                 help="paper: reproduce the reference implementation's decisions over two servers "
                      "(--base URL#MODEL --guide URL#MODEL; see README, Paper-exact mode)."),
)


def settings_from_options(opts: dict[str, Any], *, diagnostics: bool = False) -> GenerationSettings:
    """Build validated settings from the decoding options (raises UsageError with the flag name)."""
    sampling = SamplingSettings(
        temperature=opts["temperature"], top_k=opts["top_k"], top_p=opts["top_p"],
        min_p=opts["min_p"], seed=opts["seed"],
    )
    return GenerationSettings(
        method=opts["method"], gamma=opts["gamma"], alpha=parse_alpha(opts["alpha"]),
        support=opts["support"], cap=opts["cap"], guide_can_stop=opts["guide_can_stop"],
        max_tokens=opts["max_tokens"], stop=tuple(opts["stop"]), sampling=sampling,
        diagnostics=diagnostics, compat=opts.get("compat", "native"),
    )


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def pair_from_options(opts: dict[str, Any], methods: list[str] | tuple[str, ...],
                      warn: Callable[[str], None] = _warn) -> ModelPair:
    """Load only the models the given methods need (default pair where not named); odd choices
    (see :mod:`option_warnings`) go to ``warn``."""
    from .engines.remote.engine import RemoteSpec
    from .engines.remote.prompts import set_templates
    from .option_warnings import option_warnings

    if RemoteSpec.is_remote(opts.get("anti") or ""):
        raise UsageError("--anti-expert: a model on a server cannot be the anti-expert (proxy "
                         "needs full distributions): give a local GGUF")
    need_anti = [m for m in methods if needing("anti", [m])]
    if need_anti and not opts.get("anti"):
        raise BlendinError(f"method {need_anti[0]!r} needs --anti-expert MODEL (the guide's untuned "
                           "counterpart)")
    pair = load_pair(
        (opts.get("base") or default_model("base")) if needing("base", methods) else None,
        (opts.get("guide") or default_model("guide")) if needing("guide", methods) else None,
        opts.get("anti") if need_anti else None,
        n_ctx=opts["n_ctx"], n_gpu_layers=opts["n_gpu_layers"], n_threads=opts["threads"],
        seed=opts.get("seed") or 0,
        remote={"api_key": opts.get("remote_api_key"), "timeout": opts.get("timeout", 60.0),
                "chunk_tokens": opts.get("remote_chunk", 16),
                "allow_fewer_logprobs": opts.get("allow_fewer_logprobs", False)},
    )
    templates = {"base": opts.get("base_template", "plain"), "guide": opts.get("guide_template", "auto")}
    if opts.get("compat") != "paper":  # paper mode lays prompts out by model name (paper.py)
        for message in set_templates({"base": pair.base, "guide": pair.guide}, templates):
            warn(message)
    for message in option_warnings(opts, methods, pair):
        warn(message)
    return pair
