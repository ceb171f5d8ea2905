"""One pair check, once, before anything decodes: the method's needs (``methods/``) against the
engines' capabilities (``engines/``), with one clear error naming what is missing and what to do."""

from __future__ import annotations

from . import methods
from .engines import is_remote
from .engines.base import Scorer
from .errors import UsageError
from .methods.spec import MethodSpec
from .methods.top100 import TOP
from .pair import ModelPair
from .settings import GenerationSettings

_FLAG = {"base": "--base", "guide": "--guide", "anti": "--anti-expert"}


def _where(engine: Scorer) -> str:
    return engine.spec.url if is_remote(engine) else engine.name


def check_pair(pair: ModelPair, settings: GenerationSettings) -> MethodSpec:
    """The method ``settings`` names, once it is sure to run on ``pair``; else a :class:`UsageError`."""
    spec = methods.get(settings.method)
    name = spec.name
    engines = {"base": pair.base, "guide": pair.guide, "anti": pair.anti}
    for role in ("base", "guide"):
        if role in spec.roles and engines[role] is None:
            raise UsageError(f"method {name!r} needs a {role} model ({_FLAG[role]})")
    if "anti" in spec.roles and pair.anti is None:
        raise UsageError(f"method {name!r} needs --anti-expert MODEL (the guide's untuned counterpart)")
    for role, need in spec.needs(settings).items():
        engine = engines[role]
        assert engine is not None
        caps = engine.capabilities
        if need == "dense" and not caps.dense_logits:
            raise UsageError(_needs_dense(spec, settings, role, engine))
        if need == "top_logprobs" and not caps.allows_top(TOP):
            raise UsageError(f"method {name} needs {TOP} logprobs per position; the server at "
                             f"{_where(engine)} allows {caps.top_logprobs}: start vLLM with "
                             f"--max-logprobs {TOP}")
    driver = engines[spec.drives]
    assert driver is not None
    if not driver.capabilities.dense_logits and settings.sampling.temperature != 0:
        raise UsageError("a remote base decodes greedily (the paper's setting): use --temperature 0")
    support = spec.support_of(settings)
    if spec.projects and support == "full" and pair.guide is not None and pair.projection is None:
        raise UsageError("the pair has no guide→base projection (load it with load_pair)")
    return spec


def _needs_dense(spec: MethodSpec, settings: GenerationSettings, role: str, engine: Scorer) -> str:
    gives = f"the {role} at {_where(engine)} gives {engine.capabilities.gives()}"
    if role != "base":
        return f"method {spec.name} needs full distributions from the {role}; {gives}: run the " \
               f"{role} locally (a GGUF)"
    if spec.remote_steps:
        return (f"method {spec.name} --support {settings.support} needs full distributions; {gives}: "
                f"use --support {' or '.join(sorted(spec.remote_steps))}")
    remote = sorted(m.name for m in methods.METHODS.values() if m.remote_steps)
    return f"method {spec.name!r} does not run on a remote base yet (remote bases run: {', '.join(remote)})"
