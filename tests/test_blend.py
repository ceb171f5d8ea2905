import math

import numpy as np
import pytest

from blendin_local import blend


def test_softmax_is_a_distribution_and_stable_for_huge_logits() -> None:
    logits = np.array([1000.0, 999.0, -1000.0], dtype=np.float32)
    p = blend.softmax(logits)
    assert p.dtype == np.float32
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert p[0] == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-5)
    assert logits[0] == 1000.0  # input untouched


def test_gate_opens_strictly_below_gamma() -> None:
    p = np.array([0.4, 0.35, 0.25], dtype=np.float32)
    assert not blend.should_intervene(p, 0.4)  # b == γ: the base keeps the token
    assert blend.should_intervene(p, 0.41)
    assert not blend.should_intervene(p, 0.0)
    assert blend.should_intervene(np.array([1.0], dtype=np.float32), 1.01)


def test_auto_alpha_hand_computed() -> None:
    # g / (b + g) + 0.1 * p_B[argmax q_G]
    assert blend.auto_alpha(0.3, 0.6, 0.2) == pytest.approx(0.6 / 0.9 + 0.02)
    assert blend.auto_alpha(0.0, 1.0, 1.0) == 1.0  # clipped
    assert blend.auto_alpha(0.5, 0.0, 0.0) == 0.0


def test_blend_hand_computed_and_renormalised() -> None:
    p_base = np.array([0.5, 0.5, 0.0], dtype=np.float32)
    q = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    out = blend.blend(p_base, q, 0.25)
    np.testing.assert_allclose(out, [0.375, 0.375, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(p_base, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(blend.blend(p_base, q, 0.0), p_base)
    np.testing.assert_allclose(blend.blend(p_base, q, 1.0), q)


def test_project_moves_mass_and_reports_the_dropped_part() -> None:
    p_guide = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    target = np.array([0, -1, 2, 2])
    kept = np.flatnonzero(target >= 0)
    q, dropped = blend.project(p_guide, kept, target[kept], 3)
    np.testing.assert_allclose(q, [0.1 / 0.8, 0.0, 0.7 / 0.8], rtol=1e-6)
    assert q.sum() == pytest.approx(1.0, abs=1e-6)
    assert dropped == pytest.approx(0.2, abs=1e-6)


def test_project_conserves_mass_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(500)).astype(np.float32)
        target = rng.integers(-1, 2000, 500)
        kept_ids = np.flatnonzero(target >= 0)
        q, dropped = blend.project(p, kept_ids, target[kept_ids], 2000)
        kept = float(p[target >= 0].sum())
        assert q.sum() == pytest.approx(1.0, abs=1e-5)
        assert dropped == pytest.approx(1.0 - kept, abs=1e-5)
        # each base id receives exactly the guide mass mapped to it, rescaled
        some = int(target[target >= 0][0])
        assert q[some] == pytest.approx(p[target == some].sum() / kept, rel=1e-4)


@pytest.mark.parametrize("n", [7, 5000, 262144])
def test_top_k_ids_equals_a_full_sort_with_ties_broken_by_id(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(10):
        logits = rng.standard_normal(n).astype(np.float32) * 3
        if trial % 3 == 0:
            logits = np.round(logits)  # many ties
        p = blend.softmax(logits)
        for k in (1, 5, 100):
            ref = np.lexsort((np.arange(n), -p))[: min(k, n)]
            np.testing.assert_array_equal(blend.top_k_ids(p, k), ref)


def test_overlap_at_k_hand_computed() -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32)
    q = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    assert blend.overlap_at_k(p, q, 2) == 0.0
    assert blend.overlap_at_k(p, p, 2) == 1.0
    assert blend.overlap_at_k(p, q, 3) == pytest.approx(2 / 3)


def test_entropy_and_jsd() -> None:
    u = np.full(4, 0.25, dtype=np.float32)
    assert blend.entropy(u) == pytest.approx(math.log(4), rel=1e-6)
    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 1.0], dtype=np.float32)
    assert blend.js_divergence(a, a) == pytest.approx(0.0, abs=1e-9)
    assert blend.js_divergence(a, b) == pytest.approx(math.log(2), rel=1e-6)


def test_proxy_combine_is_the_base_when_expert_equals_anti() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(50)).astype(np.float32)
    q = rng.dirichlet(np.ones(50)).astype(np.float32)
    np.testing.assert_allclose(blend.proxy_combine(p, q, q), p, rtol=1e-4)
    # an expert that likes token 3 more than the anti-expert raises it
    q2 = q.copy()
    q2[3] *= 10
    assert blend.proxy_combine(p, q2, q)[3] > p[3]


def test_top_k_ids_on_a_projected_distribution_that_is_mostly_zero() -> None:
    rng = np.random.default_rng(5)
    n, m = 262144, 49152
    for _ in range(5):
        target = rng.integers(0, n, m)
        p_guide = blend.softmax(np.round(rng.standard_normal(m) * 2).astype(np.float32))
        q, _ = blend.project(p_guide, np.arange(m), target, n)
        for k in (10, 100):
            np.testing.assert_array_equal(blend.top_k_ids(q, k), np.lexsort((np.arange(n), -q))[:k])
    few = np.zeros(n, dtype=np.float32)
    few[[7, 3, 9]] = [0.5, 0.3, 0.2]  # fewer positive entries than k: zeros fill up by id
    np.testing.assert_array_equal(blend.top_k_ids(few, 5), [7, 3, 9, 0, 1])


def test_top_k_ids_on_a_distribution_with_fewer_positive_entries_than_k() -> None:
    p = np.zeros(262144, dtype=np.float32)
    p[[70000, 5, 200000]] = [0.5, 0.3, 0.2]
    np.testing.assert_array_equal(blend.top_k_ids(p, 6), [70000, 5, 200000, 0, 1, 2])
    p = np.zeros(262144, dtype=np.float32)
    p[np.arange(100, 262144, 1000)] = 1.0  # 263 equal positive entries
    np.testing.assert_array_equal(blend.top_k_ids(p, 100), np.arange(100, 100100, 1000))
