"""The engine family: one module per kind of engine, each declaring ``KIND`` (an :class:`EngineKind`).

This is the one registry of engine kinds, built by listing the modules; ``models.load_engine`` asks
it which kind a model name denotes. ``base`` holds the interfaces every kind implements.
"""

from __future__ import annotations

from typing import TypeGuard

from ..registry import collect
from .base import Capabilities, Engine, EngineKind, Position, Scorer
from .remote.engine import RemoteModel

KINDS: tuple[EngineKind, ...] = tuple(
    sorted(collect(__name__, __path__, "KIND", EngineKind), key=lambda k: (k.fallback, k.name))
)


def kind_of(spec: str) -> EngineKind:
    """The kind of engine a model name denotes (the fallback kind when no other claims it)."""
    return next(k for k in KINDS if k.fallback or k.claims(spec))


def is_remote(engine: object) -> TypeGuard[RemoteModel]:
    """A model behind a server: stateless, top-k logprobs as strings, no vocabulary to read."""
    return isinstance(engine, RemoteModel)


__all__ = ["KINDS", "Capabilities", "Engine", "EngineKind", "Position", "Scorer", "is_remote", "kind_of"]
