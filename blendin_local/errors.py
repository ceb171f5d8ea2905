"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""

from __future__ import annotations


class BlendinError(Exception):
    """Base class for every error caused by the user's input or files."""


class UsageError(BlendinError, ValueError):
    """A bad option value (names the parameter and the value)."""


class ModelFileError(BlendinError):
    """A model file that is missing, truncated or not GGUF, or a model name not in the catalog."""


class ContextOverflowError(BlendinError):
    """The prompt does not fit the model's context window."""

    @classmethod
    def of(cls, model: str, tokens: int, n_ctx: int) -> ContextOverflowError:
        """The one wording for ``tokens`` that ``model``'s context of ``n_ctx`` cannot hold."""
        return cls(f"{model}: {tokens} tokens do not fit the context of {n_ctx} "
                   "(raise --n-ctx or shorten the prompt)")
