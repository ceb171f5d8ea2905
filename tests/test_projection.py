from __future__ import annotations

import numpy as np
import pytest

from blendin_local import projection as proj_mod
from blendin_local.projection import APPROX, DROP, END, EXACT, build_projection, load_or_build

from fakes import BASE_PIECES, GUIDE_PIECES, fake_base, fake_guide


def test_cross_tokenizer_rules() -> None:
    base, guide = fake_base(), fake_guide()
    p = build_projection(base, guide)
    g = GUIDE_PIECES.index
    b = BASE_PIECES.index
    assert not p.identity
    assert (p.target[g(b" a")], p.kind[g(b" a")]) == (b(b" a"), EXACT)
    assert (p.target[g(b"he")], p.kind[g(b"he")]) == (b(b"h"), APPROX)  # first base token of "he"
    assert (p.target[g(b"abc")], p.kind[g(b"abc")]) == (b(b"ab"), APPROX)
    assert (p.target[0], p.kind[0]) == (base.eos_id, END)  # guide end of turn → base EOS
    assert (p.target[1], p.kind[1]) == (-1, DROP)  # other control token dropped
    cov = p.coverage()
    assert sum(cov.values()) == pytest.approx(100.0)


def test_without_end_drops_the_end_of_turn() -> None:
    p = build_projection(fake_base(), fake_guide()).without_end()
    assert p.target[0] == -1 and p.kind[0] == DROP


def test_same_vocabulary_is_the_identity() -> None:
    base = fake_base()
    p = build_projection(base, fake_base(salt="other"))
    assert p.identity
    np.testing.assert_array_equal(p.target, np.arange(len(BASE_PIECES)))


def test_cache_is_reused_and_a_damaged_entry_rebuilt(tmp_path, monkeypatch) -> None:
    calls = []
    real = proj_mod.build_projection
    monkeypatch.setattr(proj_mod, "build_projection", lambda b, g: calls.append(1) or real(b, g))
    first = load_or_build(fake_base(), fake_guide(), tmp_path)
    second = load_or_build(fake_base(), fake_guide(), tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.target, second.target)
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(b"garbage")
    third = load_or_build(fake_base(), fake_guide(), tmp_path)
    assert len(calls) == 2
    np.testing.assert_array_equal(first.kind, third.kind)


def test_answer_start_maps_guide_tokens_to_their_space_led_base_twins() -> None:
    p = build_projection(fake_base(), fake_guide())
    start = p.at_answer_start()
    g, b = GUIDE_PIECES.index, BASE_PIECES.index
    assert p.target[g(b"the")] == b(b"the")
    assert start.target[g(b"the")] == b(b" the")  # "Answer:" + " the"
    assert start.target[g(b"abc")] == p.target[g(b"abc")]  # no " abc" in the base: unchanged
    assert start.target[0] == p.target[0]  # the end of turn still maps to base EOS
