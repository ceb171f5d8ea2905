"""Evaluation harness: benchmark readers, scorers, a resumable runner, summaries and plots.

The commands (``blendin-local eval`` / ``diagnose``) live in :mod:`.commands`; everything else is a
library that decodes only through :func:`blendin_local.generation.generate.generate`.
"""

from .datasets import TASK_NAMES, BadRow, DataFileError, Item, load_items
from .records import RecordStore
from .runner import Setting, build_grid, run_plan, score
from .scoring import extract_choice, extract_number, is_refusal, wilson_interval

__all__ = [
    "TASK_NAMES", "BadRow", "DataFileError", "Item", "RecordStore", "Setting", "build_grid",
    "extract_choice", "extract_number", "is_refusal", "load_items", "run_plan", "score",
    "wilson_interval",
]
