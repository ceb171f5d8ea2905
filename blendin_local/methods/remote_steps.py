"""Decoding with a remote base (and a local or remote guide): the paper's top-100 string blend, with
one base request per confident run of tokens instead of one per token (spec §3, §10).

While the base is confident its streamed chunk is accepted token by token; at the first position whose
top-1 probability is below γ the stream is closed, the guide is asked about that same position, the
two top-k string distributions are blended, and the next base request starts after the chosen string.
The base's distribution at that position is the one already streamed: no extra request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np

from .. import blend
from ..decoding import Decoding
from ..engines.remote import Position, RemoteModel
from ..pair import prompt_for
from ..settings import CAP_WARMUP
from ..steps import Provenance, Step, StopReason
from ..sync import TextSync
from .top100 import (
    TOP,
    blend_string_distributions,
    choose_string,
    decoded_strings,
    string_distribution,
    string_overlaps,
)


def remote_steps(gen: Decoding) -> Iterator[Step]:
    base = gen.pair.base
    assert isinstance(base, RemoteModel)
    s = gen.settings
    prompt = prompt_for(base, gen.conv, role="base").text.decode("utf-8", errors="replace")
    guide_sync = guide_strings = None
    if s.method != "base":
        guide = gen.pair.guide
        assert guide is not None
        gp = prompt_for(guide, gen.conv, role="guide")
        guide_sync = TextSync(guide, gp.text, add_bos=gp.add_bos, lstrip_answer=gp.templated)
        gen.syncs.append(guide_sync)
        guide_strings = decoded_strings(guide.pieces(), guide.control_ids())
    interventions = 0
    index = 0
    while index < s.max_tokens:
        text_so_far = gen.output.y.decode("utf-8", errors="replace")
        asked = min(base.chunk_tokens, s.max_tokens - index)
        got = 0
        unsure: Position | None = None
        t0 = time.perf_counter()
        with contextlib.closing(base.stream(prompt + text_so_far, max_tokens=asked, logprobs=TOP)) as chunk:
            for position in chunk:
                got += 1
                t_base = time.perf_counter() - t0
                capped = s.cap is not None and index >= CAP_WARMUP and interventions / index >= s.cap
                if guide_sync is not None and position.top1_prob < s.gamma and not capped:
                    unsure = position
                    break  # closes the stream: nothing more is read from this request
                yield _base_step(gen, position, index, t_base)
                index += 1
                if gen.stop_reason is not None or index >= s.max_tokens:
                    return
                t0 = time.perf_counter()
        if unsure is None:
            if got < asked:  # the server ended the text (its EOS) before the chunk was full
                gen.stop_reason = StopReason.EOS
                gen.output.finish()
                return
            continue
        assert guide_sync is not None and guide_strings is not None
        interventions += 1
        yield _blend_step(gen, unsure, guide_sync, guide_strings, index, time.perf_counter() - t0)
        index += 1
        if gen.stop_reason is not None:
            return


def _base_step(gen: Decoding, position: Position, index: int, t_base: float) -> Step:
    piece = position.text.encode()
    text = gen.push(piece, index)
    b = position.top1_prob
    return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.BASE,
                intervened=False, b=b, p_base_token=float(np.exp(position.logprob)), t_base=t_base)


def _blend_step(gen: Decoding, position: Position, guide_sync: TextSync, guide_strings: list[str],
                index: int, t_base: float) -> Step:
    s = gen.settings
    t1 = time.perf_counter()
    guide_sync.update(gen.output.y)
    p_guide = blend.softmax(guide_sync.engine.logits())
    t2 = time.perf_counter()
    bd = position.probs()
    gd = string_distribution(p_guide, guide_strings)
    b, g = max(bd.values()), float(p_guide.max())
    mixed, alpha, b_top, _ = blend_string_distributions(bd, gd, b, g, s.alpha)
    piece, text, provenance = choose_string(gen, mixed, b_top, index)
    choice = piece.decode()
    o10, o100 = string_overlaps(bd, gd)
    return Step(index=index, token=-1, piece=piece, text=text, provenance=provenance,
                intervened=True, b=b, g=g, alpha=alpha, p_base_token=bd.get(choice),
                p_guide_token=gd.get(choice), overlap10=o10, overlap100=o100,
                t_base=t_base, t_guide=t2 - t1,
                t_blend=time.perf_counter() - t2)
