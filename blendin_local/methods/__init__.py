"""The decoding methods: one module per method, each defining ``SPEC`` (a :class:`MethodSpec`).

This is the one registry of methods. It is built by listing this package's modules, so adding a
method is one file here (plus its tests); modules without a ``SPEC`` are shared helpers.
"""

from __future__ import annotations

from ..errors import UsageError
from ..registry import collect
from .spec import MethodSpec


def _collect() -> dict[str, MethodSpec]:
    found: dict[str, MethodSpec] = {}
    for spec in collect(__name__, __path__, "SPEC", MethodSpec):
        if spec.name in found:
            raise RuntimeError(f"two method modules define method {spec.name!r}")
        found[spec.name] = spec
    return dict(sorted(found.items(), key=lambda kv: (kv[1].rank, kv[0])))


METHODS: dict[str, MethodSpec] = _collect()


def names() -> tuple[str, ...]:
    """Every method's name, in the order users see them."""
    return tuple(METHODS)


def get(name: str) -> MethodSpec:
    """The method called ``name``; a :class:`UsageError` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {name!r}") from None


def needing(role: str, methods: list[str] | tuple[str, ...]) -> bool:
    """Does any of ``methods`` run a model in ``role``?"""
    return any(role in get(m).roles for m in methods)


def using(role: str) -> list[str]:
    """The methods that run a model in ``role`` (e.g. ``anti``: those that need ``--anti-expert``)."""
    return [m.name for m in METHODS.values() if role in m.roles]


__all__ = ["METHODS", "MethodSpec", "get", "names", "needing", "using"]
