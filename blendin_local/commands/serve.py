"""``blendin-local serve``: the Click command. FastAPI and uvicorn load only when it runs."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from typing import Any

import click

from .. import limits, methods
from ..cli_options import decoding_options, model_options, pair_from_options, settings_from_options
from ..errors import UsageError
from ..prompts import CHAT_SYSTEM

API_KEY_ENV = "BLENDIN_API_KEY"
# 4: on 2 CPU cores batched decode already gives ~1.7x the tokens/s of one answer at 4 (spec §11,
# 2.45x at 8), while 4 KV caches of --n-ctx tokens stay small beside the models; fewer where they
# would not fit half the free memory. A single chat user keeps KV reuse across turns with 1.
DEFAULT_PARALLEL = 4


def parse_parallel(value: str | None) -> int | None:
    """``--parallel``: an integer >= 1 (None: the default, chosen once the models are loaded)."""
    return limits.parse_count("parallel", value)


def choose_parallel(pair: Any, asked: int | None) -> int:
    """The default (fewer where memory is short), or the asked number if its KV caches fit."""
    from ..generation.many import fitting_batch

    if asked is None:
        return fitting_batch(pair, DEFAULT_PARALLEL)
    fits = fitting_batch(pair, asked)
    if fits < asked:
        raise UsageError(f"--parallel {asked}: the KV caches of {asked} sequences would take more "
                         f"than half the free memory (at most {fits} fit); lower --parallel or --n-ctx")
    return asked


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Serving beyond this machine without a key would hand the models to anyone: refuse."""
    if api_key is None and not is_loopback(host):
        raise UsageError(
            f"--host {host} is reachable from other machines: set --api-key (or ${API_KEY_ENV}) "
            "to serve there, or bind 127.0.0.1"
        )
    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key must not be empty")


@click.command("serve")
@model_options
@decoding_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key", envvar=API_KEY_ENV, default=None, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request.")
@click.option("--system", default=CHAT_SYSTEM, show_default=True,
              help="System prompt of chats that send none.")
@click.option("--fresh-cache", is_flag=True,
              help="Start every request from empty KV caches (reproducible, slower chats) instead "
                   "of reusing the prompt prefix the models already hold.")
@click.option("--parallel", default=None, metavar="N",
              help=f"Requests decoded together (continuous batching; default {DEFAULT_PARALLEL}, "
                   "fewer where their KV caches would not fit half the free memory); a request "
                   "takes the slot whose KV cache its prompt continues. 1: one at a time.")
@click.option("--queue-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Requests that may wait for the decoding worker; more get 429.")
@click.option("--queue-timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds a request may wait for its turn before a 503.")
@click.option("--max-body", type=click.IntRange(min=1024), default=1 << 20, show_default=True,
              help="Largest request body in bytes (413 above).")
@click.option("--max-tokens-limit", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Largest max_tokens a request may ask for (422 above).")
@click.option("--max-prompt-chars", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Longest prompt in characters (400 above; the context length also applies).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve_command(host: str, port: int, api_key: str | None, system: str, fresh_cache: bool,
                  parallel: str | None, queue_size: int, queue_timeout: float, max_body: int,
                  max_tokens_limit: int, max_prompt_chars: int, log_level: str, **opts: Any) -> None:
    """Serve BlendIn over an OpenAI-compatible API (/v1/models, /v1/chat/completions,
    /v1/completions, streaming or not).

    Each method the pair can run is a model id (blendin, base, guide, nudging, ensemble, and
    proxy with --anti-expert); the decoding options are the defaults a request overrides with its
    own fields (temperature, top_p, seed, stop, max_tokens, and BlendIn's gamma, alpha, method,
    support, cap). One worker decodes up to --parallel requests together; the others wait in a
    queue.
    """
    check_bind(host, api_key)
    asked = parse_parallel(parallel)
    settings = replace(settings_from_options(opts), reuse_cache=not fresh_cache)
    pair = pair_from_options(opts, ["blendin", *(methods.using("anti") if opts.get("anti") else [])])
    n_parallel = choose_parallel(pair, asked)

    import uvicorn

    from ..serve.app import ServeConfig, create_app, servable_models

    config = ServeConfig(
        defaults=settings, api_key=api_key, system=system, first_model=settings.method,
        queue_size=queue_size, queue_timeout_s=queue_timeout, max_body_bytes=max_body,
        max_tokens_limit=max_tokens_limit, max_prompt_chars=max_prompt_chars, parallel=n_parallel,
    )
    configure_logging(log_level)
    log = logging.getLogger("blendin_local.serve")
    log.info("models: %s; KV cache %s; API key %s", ", ".join(servable_models(pair)),
             "fresh per request" if fresh_cache else "reused across requests",
             "required" if api_key else "not required")
    uvicorn.run(create_app(pair, config), host=host, port=port, log_level=log_level,
                access_log=False)  # our own access line carries tokens and interventions


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("blendin_local.serve")
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


command = serve_command
