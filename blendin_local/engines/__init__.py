"""The engine family: one module per kind of engine, each declaring ``KIND`` (an :class:`EngineKind`).

This is the one registry of engine kinds, built by listing the modules; ``models.load_engine`` asks
it which kind a model name denotes. ``base`` holds the interfaces every kind implements.
"""

from __future__ import annotations

from ..registry import collect
from .base import Capabilities, Engine, EngineKind, Position, Scorer
from .remote.engine import RemoteModel

KINDS: tuple[EngineKind, ...] = tuple(
    sorted(collect(__name__, __path__, "KIND", EngineKind), key=lambda k: (k.fallback, k.name))
)


def kind_of(spec: str) -> EngineKind:
    """The kind of engine a model name denotes (the fallback kind when no other claims it)."""
    return next(k for k in KINDS if k.fallback or k.claims(spec))


def server_of(engine: object) -> RemoteModel:
    """The server behind ``engine``, for code that uses what only a server has (its traffic, chunk
    size, route, clones, whole-text scoring). Callers choose by capabilities first: a local engine
    here is a bug."""
    if not isinstance(engine, RemoteModel):
        raise TypeError(f"{getattr(engine, 'name', engine)} is not a model on a server")
    return engine


def servers(*engines: object) -> list[RemoteModel]:
    """The models among ``engines`` that are behind a server (None and local ones left out), for
    settings only a server has (its route, its cores, its prompt template)."""
    return [e for e in engines if isinstance(e, RemoteModel)]


__all__ = ["KINDS", "Capabilities", "Engine", "EngineKind", "Position", "Scorer", "kind_of",
           "server_of", "servers"]
