"""Fake model pairs for unit tests: small vocabularies, logits drawn from a seeded hash of the
context, so every run is deterministic and every method can be driven without llama.cpp."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from blendin_local.pair import ModelPair
from blendin_local.projection import build_projection

from .engine import FakeEngine

# Every printable ASCII byte and newline is a token, so any prompt encodes.
_BYTES = [bytes([c]) for c in range(32, 127)] + [b"\n"]
# Base: id 0 is EOS, 1 BOS; multi-byte pieces with leading spaces.
BASE_PIECES = [b"<eos>", b"<bos>", b" a", b" b", b" c", b"ab", b"the", b" the", *_BYTES]
# Guide: a different tokenizer. "abc" has no base twin (approximate), <|end|> is its end of turn.
GUIDE_PIECES = [b"<|end|>", b"<|start|>", b"abc", b" a", b"the", b" the", b"he", *_BYTES]
GUIDE_TEMPLATE = (
    "{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)


def hashed_logits(n_vocab: int, salt: str, scale: float = 3.0) -> Callable[[tuple[int, ...]], np.ndarray]:
    """Logits that are a deterministic pseudo-random function of the whole context."""

    def fn(ctx: tuple[int, ...]) -> np.ndarray:
        digest = hashlib.sha256((salt + repr(ctx)).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return (rng.standard_normal(n_vocab) * scale).astype(np.float32)

    return fn


def fake_base(scale: float = 3.0, salt: str = "base", **kw: object) -> FakeEngine:
    return FakeEngine(BASE_PIECES, hashed_logits(len(BASE_PIECES), salt, scale), eos_id=0,
                      bos_id=1, name="fake-base", **kw)  # type: ignore[arg-type]


def fake_guide(scale: float = 3.0, salt: str = "guide", **kw: object) -> FakeEngine:
    return FakeEngine(GUIDE_PIECES, hashed_logits(len(GUIDE_PIECES), salt, scale), eos_id=0,
                      controls=[1], chat_template=GUIDE_TEMPLATE, name="fake-guide",
                      **kw)  # type: ignore[arg-type]


def pair_of(base: FakeEngine, guide: FakeEngine | None = None) -> ModelPair:
    """The one way tests pair fakes: with a guide, its projection onto the base is built too."""
    projection = build_projection(base, guide) if guide is not None else None
    return ModelPair(base=base, guide=guide, projection=projection)


def cross_pair(base_scale: float = 3.0, guide_scale: float = 3.0) -> ModelPair:
    return pair_of(fake_base(base_scale), fake_guide(guide_scale))


def same_tokenizer_pair(base_scale: float = 3.0, guide_scale: float = 3.0) -> ModelPair:
    base = fake_base(base_scale)
    guide = FakeEngine(BASE_PIECES, hashed_logits(len(BASE_PIECES), "guide", guide_scale),
                       eos_id=0, bos_id=1, chat_template=GUIDE_TEMPLATE.replace("<|start|>", "Q")
                       .replace("<|end|>", "."), name="fake-guide-same")
    return pair_of(base, guide)
