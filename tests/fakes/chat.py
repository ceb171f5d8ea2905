"""A scripted fake model pair for the chat app's tests (``chat_pair``) (no model files, deterministic).

The base has no chat template (the plain "User:/Assistant:" format); the guide has ChatML control
tokens. Asked anything, the base answers " The capital of France is Lyon." and is unsure at two
steps: at " capital" (the guide agrees) and at " Lyon" (the guide changes it to " Paris").
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numpy.typing import NDArray

from blendin_local.pair import ModelPair

from .engine import FakeEngine, peaked
from .pairs import pair_of

WORDS = [b" The", b" capital", b" of", b" France", b" is", b" Paris", b" Lyon", b" city", b".",
         b" blah"]
BYTES = [bytes([i]) for i in range(256)]
BASE_PIECES = BYTES + WORDS + [b"Assistant:", b"<eos>"]
GUIDE_PIECES = BYTES + WORDS + [b"<|im_start|>", b"<|im_end|>", b"assistant", b"user", b"system"]
END = None  # the model's end token in a script

# (favourite, its probability, runner-up, its probability) by answer position.
BASE_SCRIPT = [
    (b" The", 0.9, b" capital", 0.02),
    (b" capital", 0.35, b" city", 0.3),  # unsure: the guide agrees
    (b" of", 0.9, b" is", 0.02),
    (b" France", 0.9, b" Paris", 0.02),
    (b" is", 0.9, b".", 0.02),
    (b" Lyon", 0.35, b" Paris", 0.3),  # unsure: the guide changes it
    (b".", 0.9, b" is", 0.02),
    (END, 0.9, b".", 0.02),
]
GUIDE_SCRIPT = [b" The", b" capital", b" of", b" France", b" is", b" Paris", b".", END]
REPLY_BASE = " The capital of France is Lyon."  # method base
REPLY_BLEND = " The capital of France is Paris."  # method blendin (and guide)


def _base_logits(long: bool, delay: float, hold: tuple[int, threading.Event] | None):
    n_vocab = len(BASE_PIECES)
    assistant = BASE_PIECES.index(b"Assistant:")
    eos = BASE_PIECES.index(b"<eos>")

    def token(piece: bytes | None) -> int:
        return eos if piece is None else BASE_PIECES.index(piece)

    def logits(ctx: tuple[int, ...]) -> NDArray[np.float32]:
        if delay:
            time.sleep(delay)  # a slow model, so a test can stop it mid-reply
        n = len(ctx) - 1 - max(i for i, t in enumerate(ctx) if t == assistant)
        if hold is not None and n == hold[0]:
            hold[1].wait(timeout=20)  # the test looks at the app mid-reply, then releases it
        if long:
            return peaked(n_vocab, {token(b" blah"): 0.9})
        first, p1, second, p2 = BASE_SCRIPT[min(n, len(BASE_SCRIPT) - 1)]
        return peaked(n_vocab, {token(first): p1, token(second): p2})

    return logits


def _guide_logits():
    n_vocab = len(GUIDE_PIECES)
    end = GUIDE_PIECES.index(b"<|im_end|>")
    marker = b"<|im_start|>assistant\n"

    def logits(ctx: tuple[int, ...]) -> NDArray[np.float32]:
        text = b"".join(GUIDE_PIECES[t] for t in ctx)
        # The library drops the answer's leading space for a templated guide (a fresh line).
        y = b" " + text[text.rfind(marker) + len(marker):].lstrip(b" ")
        done, k = b"", 0
        while k < len(GUIDE_SCRIPT):
            word = GUIDE_SCRIPT[k]
            if word is None or not y.startswith(done + word):
                break
            done += word
            k += 1
        piece = GUIDE_SCRIPT[min(k, len(GUIDE_SCRIPT) - 1)]
        return peaked(n_vocab, {end if piece is None else GUIDE_PIECES.index(piece): 0.9})

    return logits


def chat_pair(
    *, long: bool = False, delay: float = 0.0, hold: tuple[int, threading.Event] | None = None
) -> ModelPair:
    """``long``: the base writes " blah" until max tokens; ``delay``: seconds per base token;
    ``hold=(n, event)``: the base waits for ``event`` before its logits at answer position n, so
    steps 0..n-2 have been shown and step n-1 is in flight."""
    logits = _base_logits(long, delay, hold)
    base = FakeEngine(BASE_PIECES, logits, eos_id=BASE_PIECES.index(b"<eos>"), n_ctx=8192,
                      name="fake-base")
    im_start, im_end = GUIDE_PIECES.index(b"<|im_start|>"), GUIDE_PIECES.index(b"<|im_end|>")
    guide = FakeEngine(GUIDE_PIECES, _guide_logits(), eos_id=im_end, controls=[im_start, im_end],
                       n_ctx=8192, name="fake-guide")
    return pair_of(base, guide)
