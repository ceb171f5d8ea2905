"""OpenAI response objects built from the library's ``Step`` and ``Result``.

The extension field ``blendin`` carries BlendIn's own data, named as ``generate --json`` and
``--trace`` name it: ``steps``/``step`` are ``Step.to_record()``, ``result`` is ``Result.to_dict()``.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..generation.generate import Generation
from ..generation.steps import Result, Step, StopReason

FINISH = {
    StopReason.EOS: "stop", StopReason.GUIDE_EOS: "stop", StopReason.STOP_STRING: "stop",
    StopReason.MAX_TOKENS: "length", StopReason.CONTEXT_FULL: "length",
    StopReason.CANCELLED: "stop", StopReason.INTERRUPTED: "stop",
}


def finish_reason(result: Result) -> str:
    return FINISH.get(result.stop_reason, "stop") if result.stop_reason else "stop"


def _logprob(p: float | None) -> float:
    return math.log(p) if p and p > 0 else -9999.0  # OpenAI's floor for impossible tokens


def usage(gen: Generation) -> dict[str, Any]:
    r = gen.result
    return {
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.tokens,
        "total_tokens": r.prompt_tokens + r.tokens,
        "prompt_tokens_details": {"cached_tokens": gen.cached_tokens},
    }


def json_safe(value: Any) -> Any:
    """JSON has no infinity (ensemble's gamma is one): non-finite floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def result_extension(gen: Generation) -> dict[str, Any]:
    """``generate --json``'s summary: ``Result.to_dict()``, its settings, and the cache reuse."""
    return json_safe({**gen.result.to_dict(), "settings": gen.settings.to_dict(),
                      "cached_tokens": gen.cached_tokens})


@dataclass
class Reply:
    """Identity and shape of one response (chat or text completion)."""

    kind: str  # "chat" | "text"
    model: str
    n_top: int | None  # top logprobs asked for (None: no logprobs)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or ("chatcmpl-" if self.kind == "chat" else "cmpl-") + secrets.token_hex(12)

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def _envelope(self, obj: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    # --- logprobs -----------------------------------------------------------------------------
    def logprobs(self, steps: Sequence[Step]) -> dict[str, Any] | None:
        """Logprobs of the final distributions; None when not asked or a step has none (nudging's
        guide words, top100's strings)."""
        if self.n_top is None or any(s.p_token is None for s in steps):
            return None
        if self.kind == "chat":
            return {"content": [{
                "token": s.piece.decode("utf-8", errors="replace"),
                "logprob": _logprob(s.p_token), "bytes": list(s.piece),
                "top_logprobs": [{"token": c.text, "logprob": _logprob(c.prob),
                                  "bytes": list(c.text.encode())} for c in s.top[: self.n_top]],
            } for s in steps]}
        offsets, pos = [], 0
        for s in steps:
            offsets.append(pos)
            pos += len(s.text)
        return {
            "tokens": [s.piece.decode("utf-8", errors="replace") for s in steps],
            "token_logprobs": [_logprob(s.p_token) for s in steps],
            "top_logprobs": [{c.text: _logprob(c.prob) for c in s.top[: self.n_top]} for s in steps],
            "text_offset": offsets,
        }

    # --- whole responses -----------------------------------------------------------------------
    def final(self, gen: Generation, steps: Sequence[Step]) -> dict[str, Any]:
        r = gen.result
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(r),
                                  "logprobs": self.logprobs(steps)}
        if self.kind == "chat":
            choice["message"] = {"role": "assistant", "content": r.text}
        else:
            choice["text"] = r.text
        ext = {"steps": [s.to_record() for s in steps], "result": result_extension(gen)}
        return self._envelope(self.object, [choice], usage=usage(gen), blendin=ext)

    # --- stream chunks -------------------------------------------------------------------------
    def chunk(self, step: Step) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": None, "logprobs": self.logprobs([step])}
        if self.kind == "chat":
            delta = {"content": step.text}
            if step.index == 0:
                delta = {"role": "assistant", **delta}
            choice["delta"] = delta
        else:
            choice["text"] = step.text
        return self._envelope(self._chunk_object, [choice], blendin={"step": step.to_record()})

    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.kind == "chat" else "text_completion"

    def last_chunk(self, gen: Generation) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(gen.result),
                                  "logprobs": None}
        if self.kind == "chat":
            choice["delta"] = {}
        else:
            choice["text"] = ""
        return self._envelope(self._chunk_object, [choice], blendin={"result": result_extension(gen)})

    def usage_chunk(self, gen: Generation) -> dict[str, Any]:
        return self._envelope(self._chunk_object, [], usage=usage(gen))
