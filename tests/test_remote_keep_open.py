"""A remote base's stream kept open through an unsure position (``RemoteModel.keep_open``): the guide
decides while the server streams on; a kept base token reads on from the same stream, a changed one
closes it. Against llama-server with the local guide: the same greedy text as closing there and as
one request per token, within the request bound, and no stream left open when an answer ends. (The
cost model's side: ``test_remote_steps``.)"""

from __future__ import annotations

import math
from collections.abc import Generator

import pytest

from blendin_local.engines.remote.engine import Position, RemoteModel, RemoteSpec
from blendin_local.generation.generate import Generation
from blendin_local.methods.remote_chunks import ServerClock, clock_for
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings


class RecordingBase(RemoteModel):
    """A remote base that keeps every stream it opened, to check none is left open."""

    def __init__(self, url: str) -> None:
        super().__init__(RemoteSpec(url, "gemma3-270m"), timeout=120)
        self.streams: list[Generator[Position, None, None]] = []

    def stream(self, prompt: str, **kw: object) -> Generator[Position, None, None]:  # type: ignore[override]
        positions = super().stream(prompt, **kw)  # type: ignore[arg-type]
        self.streams.append(positions)
        return positions


def far_server_clock(base: RemoteModel) -> None:
    """Costs as of a server 50 ms away at 10 ms per token: chunks of several tokens, so that
    unsure positions fall inside chunks (a loopback server measured alone asks 1-2)."""
    clock = clock_for(base.clocks, base.routed)
    assert isinstance(clock, ServerClock)
    clock.firsts.extend([0.060] * 16)
    clock.gaps.extend([0.010] * 32)
    clock.positions, clock.unsure = 100, 10


def answer(pair: ModelPair, question: str, *, chunk: int, keep_open: bool, max_tokens: int
           ) -> tuple[Generation, list[int]]:
    base = pair.base
    assert isinstance(base, RemoteModel)
    base.chunk_tokens, base.keep_open = chunk, keep_open
    settings = GenerationSettings(method="blendin", support="top100", gamma=0.4, max_tokens=max_tokens)
    gen = Generation(pair, Conversation.single(question), settings)
    unsure = [step.index for step in gen if step.intervened]
    return gen, unsure


@pytest.mark.integration
def test_kept_open_streams_give_the_same_text_within_the_bound_and_are_closed(native_gemma_server, real_pair):
    base = RecordingBase(native_gemma_server)
    far_server_clock(base)
    pair = ModelPair(base=base, guide=real_pair.guide)
    question = "A baker makes 24 muffins and sells 10. How many are left?"
    kept, unsure = answer(pair, question, chunk=16, keep_open=True, max_tokens=40)
    closing, _ = answer(pair, question, chunk=16, keep_open=False, max_tokens=40)
    per_token, _ = answer(pair, question, chunk=1, keep_open=True, max_tokens=40)
    r = kept.result
    assert r.text == closing.result.text == per_token.result.text
    traffic = r.remote["base"]  # type: ignore[index]
    k = traffic["largest_chunk"]
    assert traffic["requests"] <= r.interventions + math.ceil(r.tokens / k) + 1
    assert 0 < traffic["kept_open"] <= traffic["decided_open"] <= r.interventions
    assert traffic["requests"] < closing.result.remote["base"]["requests"]  # type: ignore[index]
    # the answer ends right at each intervention (its pick is the last token): no stream stays open
    for index in unsure[:4]:
        far_server_clock(base)
        ended, _ = answer(pair, question, chunk=16, keep_open=True, max_tokens=index + 1)
        assert per_token.result.text.startswith(ended.result.text)
    assert base.streams and all(s.gi_frame is None for s in base.streams)
    base.close()
