"""Scoring a whole text on an OpenAI-compatible server in one request (for ``replay``).

``echo: true`` with ``logprobs: k`` and ``max_tokens: 1`` makes vLLM (from its prompt logprobs) and
llama-cpp-python's server (from its kept logits) return the legacy ``logprobs`` object for every
token of the prompt: ``tokens``, ``text_offset`` and ``top_logprobs`` (each the distribution *before*
that token, the first ``null``). llama.cpp's native server refuses ``echo`` (400 "Only no echo is
supported"); a server that ignores it returns only the generated position. Either way the text must
be read one request per step: :class:`PromptScorer` probes once and remembers.
"""

from __future__ import annotations

from typing import Any

from .engine import RemoteError, RemoteModel, RequestRefused, parse_positions

Scored = list[tuple[int, dict[str, float]]]  # (character offset of a token, {string: logprob} before it)


class PromptScorer:
    """Scores texts on ``model``'s server; after one refusal it answers None (one request per step)."""

    def __init__(self, model: RemoteModel, k: int = 100) -> None:
        self.model = model
        self.k = k
        self.can_score: bool | None = None  # unknown until the first request

    @property
    def mode(self) -> str:
        return {None: "not asked", True: "one scoring request per text"}.get(
            self.can_score, "one request per step (the server cannot score a prompt)")

    def score(self, text: str) -> Scored | None:
        """The server's tokens of ``text`` with the top-k before each, or None if it cannot."""
        if self.can_score is False:
            return None
        body = {"prompt": text, "echo": True, "logprobs": self.k, "max_tokens": 1,
                "temperature": 0.0, "stream": False}
        try:
            data = self.model.complete_json(body)
        except RequestRefused:
            self.can_score = False
            return None
        scored = parse_scored(data, text, self.k, self.model.spec.url)
        self.can_score = scored is not None
        return scored


def parse_scored(data: Any, text: str, k: int, url: str) -> Scored | None:
    """Validate an ``echo`` answer; None when it holds no scored prompt positions (echo ignored)."""
    try:
        choice = data["choices"][0]
        if choice.get("logprobs") is None:
            raise RemoteError(f"the server at {url} returned no logprobs (it must support the "
                              "completions API's logprobs)")
        offsets = _scored_only(choice)
        if offsets is None:
            raise RemoteError(f"{url} answered a scoring request without a text_offset per token")
        positions = parse_positions(choice)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        detail = f": {exc}" if isinstance(exc, ValueError) and str(exc) else ""
        raise RemoteError(f"{url} answered a scoring request with a body that is not OpenAI's "
                          f"completions shape{detail}") from None
    if not positions or offsets[0] >= len(text):  # only the generated token: echo was ignored
        return None
    if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)) or offsets[0] < 0:
        raise RemoteError(f"{url} answered a scoring request with text offsets out of order")
    return [(o, _top_k(p.top, k)) for o, p in zip(offsets, positions, strict=True) if p.top]


def _scored_only(choice: dict[str, Any]) -> list[int] | None:
    """Drop, in place, the positions an echo leaves unscored (the text's first token has a
    ``null`` logprob); returns the kept positions' text offsets (None when they are missing)."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list):
        return None
    offsets = lp.get("text_offset")
    values = lp["token_logprobs"]
    if not isinstance(offsets, list) or len(offsets) != len(values) or not all(
        isinstance(o, int) and not isinstance(o, bool) for o in offsets
    ):
        return None
    keep = [i for i, v in enumerate(values) if v is not None]
    for key in ("tokens", "token_logprobs", "top_logprobs"):
        if isinstance(lp.get(key), list) and len(lp[key]) == len(values):
            lp[key] = [lp[key][i] for i in keep]
    return [offsets[i] for i in keep]


def _top_k(top: dict[str, float], k: int) -> dict[str, float]:
    """The ``k`` most likely entries: llama-cpp-python adds the scored token itself to a prompt
    position's top list, which a generated position's list would not hold."""
    if len(top) <= k:
        return top
    keep = sorted(top.values(), reverse=True)[k - 1]
    out = {s: v for s, v in top.items() if v >= keep}
    while len(out) > k:  # ties at the cut: drop the latest
        out.pop(next(reversed(out)))
    return out
