"""The guide as the text-level methods see it (``--support top100`` blends, nudging), whether it runs
here (a GGUF) or behind a server: its top-100 strings at the position after the answer so far, and a
greedy draft. Both kinds read the guide's prompt + the answer text as one text (spec §3, §4).

A local guide keeps its KV cache on the canonical tokenisation (:class:`TextSync`); a remote guide
gets the text re-sent: one request per question asked of it, so guide requests = interventions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .. import blend
from ..engines import server_of
from ..engines.base import Engine, Eval, Requests, answered, decoded_strings, now
from ..engines.remote.engine import RemoteModel
from ..engines.remote.prompts import remote_prompt
from ..generation.sync import TextSync, complete_utf8_prefix
from ..pair import prompt_for
from .strings import TOP, string_distribution

if TYPE_CHECKING:
    from ..generation.decoding import Decoding

Draft = list[tuple[int, bytes]]  # (token id, or -1 where a server gave text only; its bytes)


class GuideView(Protocol):
    def strings(self, y: bytes) -> tuple[dict[str, float], float]:
        """The guide's ``{string: prob}`` over its top-100 tokens after its prompt + ``y``, and
        its top-1 probability ``g``."""
        ...

    def strings_requests(self, y: bytes) -> Requests[tuple[dict[str, float], float]]:
        """:meth:`strings`, a local guide's evaluations as requests (a driver may batch them)."""
        ...

    def draft(self, y: bytes, limit: int) -> tuple[Draft, bool]:
        """Up to ``limit`` greedy tokens after its prompt + ``y``; and whether it ended its turn."""
        ...

    def draft_requests(self, y: bytes, limit: int) -> Requests[tuple[Draft, bool]]:
        """:meth:`draft`, a local guide's evaluations as requests (a driver may batch them)."""
        ...


class LocalGuide:
    def __init__(self, gen: Decoding, engine: Engine) -> None:
        gp = prompt_for(engine, gen.conv, role="guide")
        self.engine = engine
        self.sync = TextSync(engine, gp.text, add_bos=gp.add_bos, lstrip_answer=gp.templated)
        gen.syncs.append(self.sync)
        self._strings = decoded_strings(engine.pieces(), engine.control_ids())

    def strings(self, y: bytes) -> tuple[dict[str, float], float]:
        return now(self.strings_requests(y))

    def strings_requests(self, y: bytes) -> Requests[tuple[dict[str, float], float]]:
        yield from self.sync.requests(y)
        p = blend.softmax(self.engine.logits())
        return string_distribution(p, self._strings), float(p.max())

    def draft(self, y: bytes, limit: int) -> tuple[Draft, bool]:
        return now(self.draft_requests(y, limit))

    def draft_requests(self, y: bytes, limit: int) -> Requests[tuple[Draft, bool]]:
        yield from self.sync.requests(y)
        guide, pieces, eog = self.engine, self.engine.pieces(), self.engine.eog_ids()
        out: Draft = []
        for _ in range(limit):
            token = int(guide.logits().argmax())
            if token in eog:
                return out, True
            out.append((token, pieces[token]))
            if len(guide.tokens) >= guide.n_ctx:
                break
            yield Eval(guide, [token])
        return out, False


class RemoteGuide:
    """A guide behind a completions server. The server reports no logprobs for an end token, so a
    one-token request that comes back empty means the guide's greedy choice is to end its turn:
    that is taken as certain (``{"": 1.0}``, as a local guide's end-of-turn string reads)."""

    def __init__(self, gen: Decoding, model: RemoteModel) -> None:
        gp = remote_prompt(model, gen.conv)
        self.model = model
        self.prompt = gp.text.decode("utf-8", errors="replace")
        self.lstrip_answer = gp.templated
        self.seconds = 0.0

    def text_after(self, y: bytes) -> str:
        y = complete_utf8_prefix(y)
        if self.lstrip_answer:  # as TextSync: a chat turn starts on a fresh line
            y = y.lstrip(b" ")
        return self.prompt + y.decode("utf-8", errors="replace")

    def strings(self, y: bytes) -> tuple[dict[str, float], float]:
        position = self.model.next_position(self.text_after(y), logprobs=TOP)
        if position is None:
            return {"": 1.0}, 1.0
        return position.probs(), position.top1_prob

    def strings_requests(self, y: bytes) -> Requests[tuple[dict[str, float], float]]:
        return answered(self.strings(y))  # a request to a server: nothing for a driver to batch

    def draft(self, y: bytes, limit: int) -> tuple[Draft, bool]:
        out: Draft = []
        ended = False
        for text, finish in self.model.text_stream(self.text_after(y), max_tokens=limit):
            if text:
                out.append((-1, text.encode()))
            ended = finish == "stop"
        return out, ended

    def draft_requests(self, y: bytes, limit: int) -> Requests[tuple[Draft, bool]]:
        return answered(self.draft(y, limit))


def guide_view(gen: Decoding) -> LocalGuide | RemoteGuide:
    guide = gen.pair.guide
    assert guide is not None
    return LocalGuide(gen, guide) if guide.capabilities.dense_logits else RemoteGuide(gen, server_of(guide))
