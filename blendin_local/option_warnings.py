"""Choices that run but are probably not what the user meant: warnings, never errors."""

from __future__ import annotations

import os
from typing import Any

from .errors import BlendinError
from .generation.overlap import cpu_count
from .methods import needing, using
from .models import default_model, resolve_model
from .pair import ModelPair


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(resolve_model(a), resolve_model(b))
    except (OSError, ValueError, BlendinError):  # e.g. a remote URL#MODEL: no file to compare
        return False


def option_warnings(opts: dict[str, Any], methods: list[str] | tuple[str, ...],
                    pair: ModelPair) -> list[str]:
    """What is odd about these options for these methods, given the loaded ``pair``."""
    out = []
    threads, cpus = opts.get("threads"), cpu_count()
    if threads is not None and threads > cpus:
        out.append(f"--threads {threads} is more than the {cpus} CPUs here: expect it slower, "
                   "not faster")
    if opts.get("anti") and not needing("anti", methods):
        out.append(f"--anti-expert is only used by --method {' / '.join(using('anti'))}: it is ignored")
    if pair.base is not None and pair.guide is not None:
        base = opts.get("base") or default_model("base")
        guide = opts.get("guide") or default_model("guide")
        if _same_file(base, guide):
            out.append(f"base and guide are the same file ({resolve_model(base)}): blending a "
                       "model with itself changes nothing")
    if pair.guide is not None and not getattr(pair.guide, "chat_template", True):
        out.append(f"the guide {pair.guide.name} has no chat template: it is prompted with a "
                   "built-in one guessed from its control tokens, which may not be its own")
    return out
