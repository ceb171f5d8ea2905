"""The engine family (``blendin_local/engines``): the registry of kinds, the capabilities each kind
declares, and ``top_logprobs(prompt, k)``, which both kinds give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blendin_local import engines
from blendin_local.engines.base import LOCAL, top_position
from blendin_local.engines.llama import LlamaEngine
from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec

from fakes import FakeEngine


@pytest.mark.parametrize(("spec", "kind"), [
    ("http://gpu-box:8000/v1#meta-llama/Llama-3.1-70B", "remote"), ("https://h/v1#m", "remote"),
    ("gemma3-270m", "local"), ("models/x.gguf", "local"), ("hf:owner/repo:Q4_K_M", "local"),
])
def test_the_registry_names_the_kind_of_every_spelling(spec, kind):
    assert engines.kind_of(spec).name == kind
    assert {k.name for k in engines.KINDS} == {"local", "remote"}


def test_each_kind_declares_what_it_gives():
    assert LlamaEngine.capabilities is LOCAL and LOCAL.dense_logits and LOCAL.kv_cache
    assert LOCAL.top_logprobs is None and LOCAL.allows_top(100_000) and LOCAL.gives() == "full distributions"
    caps = RemoteModel(RemoteSpec("http://h/v1", "m")).capabilities
    assert not caps.dense_logits and not caps.kv_cache and not caps.vocabulary
    assert caps.top_logprobs == 100 and caps.allows_top(100) and not caps.allows_top(101)
    assert caps.gives() == "top-100 logprobs"


def test_every_engine_says_where_it_is_and_what_it_cost(tiny_engine):
    local = FakeEngine([b"<eos>", b"a"], lambda ctx: np.zeros(2, np.float32), eos_id=0, name="tiny-fake")
    assert local.where == "tiny-fake" and local.report() is None
    assert tiny_engine.where == tiny_engine.name and tiny_engine.report() is None
    remote = RemoteModel(RemoteSpec("http://h:8000/v1", "m"))
    assert remote.where == "http://h:8000/v1" and remote.report()["requests"] == 0
    # server-only API: reached through the typed accessors, never by a class test at the call site
    assert engines.servers(local, None, remote, tiny_engine) == [remote]
    assert engines.server_of(remote) is remote
    with pytest.raises(TypeError, match="tiny-fake is not a model on a server"):
        engines.server_of(local)


def test_top_position_is_what_a_server_reports_later_duplicates_winning():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    position = top_position(logits, ["a", "b", "a", "c"], 3)
    assert position.text == "a" and position.logprob == pytest.approx(math.log(0.5), abs=1e-6)
    # "a" is listed at ranks 1 and 3: the later (0.15) wins, as when a server's JSON is parsed
    assert position.probs() == pytest.approx({"a": 0.15, "b": 0.3})
    assert position.top1_prob == pytest.approx(0.3)


def test_a_local_engine_gives_top_logprobs_from_its_logits_row():
    pieces = [b"<eos>", b" x", b" y", b"z"]

    def logits(ctx: tuple[int, ...]) -> np.ndarray:
        row = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
        row[len(ctx) % 3 + 1] = 2.0  # the peak moves with the context
        return row

    engine = FakeEngine(pieces, logits, eos_id=0)
    position = engine.top_logprobs(" x y", 2)
    assert engine.tokens == [1, 2]  # the prompt is what the KV cache holds now
    total = np.exp(2.0) + np.exp(1.0) + 2
    assert position is not None and position.text == "z"  # after 2 tokens, row[3] is the peak
    # the control token EOS is reported as "", as servers skip control text
    assert position.top == pytest.approx({"z": 2.0 - math.log(total), "": 1.0 - math.log(total)})


@pytest.mark.integration
def test_local_and_remote_engines_give_the_same_top_logprobs(gemma_server, real_pair):
    """The same model, once local (dense logits) and once behind a server (top-k logprobs)."""
    remote = engines.kind_of(f"{gemma_server}#gemma3-270m").open(f"{gemma_server}#gemma3-270m",
                                                                  timeout=120.0)
    base = real_pair.base
    assert base is not None and base.name == "gemma3-270m"
    prompt = "Question: What is the capital of France?\nAnswer:"
    try:
        local = base.top_logprobs(prompt, 5)
    finally:
        base.rollback(0)  # leave the shared engine as every generation expects it
    served = remote.top_logprobs(prompt, 5)
    assert local is not None and served is not None
    assert served.text == local.text
    assert list(served.top) == list(local.top)
    assert list(served.top.values()) == pytest.approx(list(local.top.values()), abs=2e-2)
