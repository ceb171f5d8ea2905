"""One pair check, once, before anything decodes: the method's needs (``methods/``) against the
engines' capabilities (``engines/``), with one clear error naming what is missing and what to do."""

from __future__ import annotations

from . import methods
from .engines.base import Scorer
from .errors import UsageError
from .methods.spec import MethodSpec
from .methods.strings import TOP
from .pair import ModelPair
from .settings import GenerationSettings

_FLAG = {"base": "--base", "guide": "--guide", "anti": "--anti-expert"}


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
                             f"{engine.where} allows {caps.top_logprobs}: start vLLM with "
                             f"--max-logprobs {TOP}")
    for role in sorted(spec.roles):
        engine = engines[role]
        if engine is not None and not engine.capabilities.dense_logits and settings.sampling.temperature != 0:
            raise UsageError(f"a {role} on a server decodes greedily (the paper's setting): use "
                             "--temperature 0")
    support = spec.support_of(settings)
    if spec.projects and support == "full" and pair.guide is not None and pair.projection is None:
        raise UsageError("the pair has no guide→base projection (load it with load_pair)")
    return spec


def _needs_dense(spec: MethodSpec, settings: GenerationSettings, role: str, engine: Scorer) -> str:
    gives = f"the {role} at {engine.where} gives {engine.capabilities.gives()}"
    other = sorted(_remote_supports(spec, role) - {spec.support_of(settings)})
    if other:
        return (f"method {spec.name} --support {settings.support} needs full distributions; {gives}: "
                f"use --support {' or '.join(other)}")
    return (f"method {spec.name} needs full distributions from the {role}; {gives}: run the {role} "
            f"locally (a GGUF){_over_servers(role)}")


def _over_servers(role: str) -> str:
    """Which methods do run with a model in ``role`` on a server."""
    runs = [m.name for m in methods.METHODS.values() if role in m.roles and _remote_supports(m, role)]
    return f", or use a method that runs with a {role} on a server: {', '.join(runs)}" if runs else ""


def _remote_supports(spec: MethodSpec, role: str) -> set[str]:
    """The supports with which ``spec`` runs with its model in ``role`` on a server."""
    return set(spec.remote_steps) if role == spec.drives else set(spec.reads_guide_text)
