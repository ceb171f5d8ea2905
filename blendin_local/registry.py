"""Families as folders: a registry is built by listing a package's modules and collecting the one
object each declares (``SPEC`` in ``methods/``, ``KIND`` in ``engines/``)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def collect(package: str, path: Iterable[str], attr: str, kind: type[T]) -> list[T]:
    """The ``attr`` object of every module of ``package`` (modules without one are helpers).

    A subpackage counts as a family member's folder: its own ``attr`` if it declares one, else those of
    its modules (``engines/remote/`` keeps ``KIND`` in ``engine.py`` beside its helpers).
    """
    found = []
    for info in pkgutil.iter_modules(list(path)):
        name = f"{package}.{info.name}"
        module = importlib.import_module(name)
        value = getattr(module, attr, None)
        if isinstance(value, kind):
            found.append(value)
        elif info.ispkg:
            found += collect(name, module.__path__, attr, kind)
    return found
