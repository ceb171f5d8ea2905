"""Test doubles, one per kind, shared by every test: an engine on scripted logits (:mod:`.engine`),
pairs of them built by one function (:func:`.pairs.pair_of`) with hashed logits (:mod:`.pairs`),
answers scripted per question (:mod:`.scripted`, for eval) or the chat app's scripted reply
(:mod:`.chat`), a fake Hugging Face Hub (:mod:`.hub`), and servers on loopback (:mod:`.servers`:
a scripted HTTP server, llama-cpp-python's and llama.cpp's own holding a GGUF)."""

from .engine import FakeEngine, FakeGroup, FakeSequence, peaked
from .pairs import (
    BASE_PIECES,
    GUIDE_PIECES,
    GUIDE_TEMPLATE,
    cross_pair,
    fake_base,
    fake_guide,
    hashed_logits,
    pair_of,
    same_tokenizer_pair,
)

__all__ = [
    "BASE_PIECES", "GUIDE_PIECES", "GUIDE_TEMPLATE", "FakeEngine", "FakeGroup", "FakeSequence",
    "cross_pair", "fake_base", "fake_guide", "hashed_logits", "pair_of", "peaked",
    "same_tokenizer_pair",
]
