"""A remote base's stream kept open through an unsure position (``RemoteModel.keep_open``): the guide
decides while the server streams on; a kept base token reads on from the same stream, a changed one
closes it. Against llama-server with the local guide: the same greedy text as closing there and as
one request per token, within the request bound, and no stream left open when an answer ends. (The
cost model's side: ``test_remote_steps``.)"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from blendin_local.engines.remote.engine import Position, RemoteModel, RemoteSpec, Traffic
from blendin_local.generation.generate import Generation
from blendin_local.generation.steps import Result
from blendin_local.methods.remote_chunks import ServerClock, clock_for
from blendin_local.pair import ModelPair
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes.servers import native_server


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


def answer(pair: ModelPair, question: str, *, chunk: int, keep_open: bool, max_tokens: int,
           cancel_at: int | None = None) -> tuple[Result, list[int], bool]:
    """The answer's summary (its own requests), the indices of its interventions, and whether a
    stream was open when it was cancelled at intervention ``cancel_at`` (a Ctrl-C, a TUI's stop)."""
    base = pair.base
    assert isinstance(base, RemoteModel) and isinstance(base, RecordingBase)
    base.chunk_tokens, base.keep_open, base.traffic = chunk, keep_open, Traffic()
    settings = GenerationSettings(method="blendin", support="top100", gamma=0.4, max_tokens=max_tokens)
    gen = Generation(pair, Conversation.single(question), settings)
    unsure: list[int] = []
    open_at_cancel = False
    for step in gen:
        if step.intervened:
            unsure.append(step.index)
            if len(unsure) == cancel_at:
                open_at_cancel = any(s.gi_frame is not None for s in base.streams)
                gen.cancel()
    return gen.result, unsure, open_at_cancel


@pytest.fixture(scope="module")
def own_gemma_server(default_models: dict[str, Path], llama_server_binary: Path) -> Iterator[str]:
    """A llama-server of this module's own: its slot's prompt cache holds only these answers. The
    session's shared one holds whatever earlier tests asked, and a prompt evaluated from another
    cached prefix can move logits in the last bits (spec §10): in one full run, after other tests
    had used the shared server, the kept-open and closing texts parted (this module alone passed);
    from the same start the three loops must agree exactly."""
    with native_server(default_models["gemma3-270m"], "gemma3-270m") as url:
        yield url


@pytest.mark.integration
def test_kept_open_streams_give_the_same_text_within_the_bound_and_are_closed(own_gemma_server, real_pair):
    base = RecordingBase(own_gemma_server)
    far_server_clock(base)
    pair = ModelPair(base=base, guide=real_pair.guide)
    question = "A baker makes 24 muffins and sells 10. How many are left?"
    kept, unsure, _ = answer(pair, question, chunk=16, keep_open=True, max_tokens=40)
    closing, _, _ = answer(pair, question, chunk=16, keep_open=False, max_tokens=40)
    per_token, _, _ = answer(pair, question, chunk=1, keep_open=True, max_tokens=40)
    assert kept.text == closing.text == per_token.text
    traffic = kept.remote["base"]  # type: ignore[index]
    k = traffic["largest_chunk"]
    assert traffic["requests"] <= kept.interventions + math.ceil(kept.tokens / k) + 1
    assert 0 < traffic["kept_open"] <= traffic["decided_open"] <= kept.interventions
    assert all(s.gi_frame is None for s in base.streams)
    # cancelled right after each of the first interventions: no stream stays open
    was_open = []
    for n in range(1, min(len(unsure), 6) + 1):
        far_server_clock(base)
        ended, _, open_at_cancel = answer(pair, question, chunk=16, keep_open=True, max_tokens=40,
                                          cancel_at=n)
        assert per_token.text.startswith(ended.text)
        assert all(s.gi_frame is None for s in base.streams)
        was_open.append(open_at_cancel)
    assert any(was_open)  # the driver ended answers with a stream open
    base.close()
