import numpy as np
import pytest

from blendin_local.errors import UsageError
from blendin_local.generation.sampling import SamplingSettings, candidates, make_sampler

P = np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32)


def test_greedy_is_argmax() -> None:
    sample = make_sampler(SamplingSettings())
    assert sample(P, np.random.default_rng(0)) == 0


def test_top_k_one_is_greedy_at_any_temperature() -> None:
    sample = make_sampler(SamplingSettings(temperature=5.0, top_k=1))
    rng = np.random.default_rng(0)
    assert {sample(P, rng) for _ in range(50)} == {0}


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass() -> None:
    ids, w = candidates(P, SamplingSettings(temperature=1.0, top_p=0.75))
    assert sorted(ids.tolist()) == [0, 1]
    ids, _ = candidates(P, SamplingSettings(temperature=1.0, top_p=0.81))
    assert sorted(ids.tolist()) == [0, 1, 2]
    assert w.sum() == pytest.approx(1.0)


def test_top_p_on_a_large_vocabulary_matches_a_full_sort() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(20000, 0.05))
    ids, _ = candidates(p, SamplingSettings(temperature=1.0, top_p=0.9))
    order = np.argsort(-p, kind="stable")
    n = int(np.searchsorted(np.cumsum(p[order]), 0.9 * p.sum())) + 1
    assert set(ids.tolist()) == set(order[:n].tolist())


def test_min_p_filters_relative_to_the_top() -> None:
    ids, _ = candidates(P, SamplingSettings(temperature=1.0, min_p=0.5))
    assert sorted(ids.tolist()) == [0, 1]


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    s = SamplingSettings(temperature=1.0)
    sample = make_sampler(s)
    runs = {
        seed: [sample(P, rng) for rng in [np.random.default_rng(seed)] for _ in range(40)]
        for seed in (1, 2)
    }
    again = [sample(P, rng) for rng in [np.random.default_rng(1)] for _ in range(40)]
    assert runs[1] == again
    assert runs[1] != runs[2]


def test_low_temperature_concentrates_on_the_top() -> None:
    sample = make_sampler(SamplingSettings(temperature=0.05))
    rng = np.random.default_rng(0)
    draws = [sample(P, rng) for _ in range(200)]
    assert draws.count(0) >= 199


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [({"temperature": -1}, "--temperature"), ({"top_p": 0.0}, "--top-p"),
     ({"top_p": 1.5}, "--top-p"), ({"min_p": 1.0}, "--min-p"), ({"top_k": -2}, "--top-k"),
     ({"temperature": float("nan")}, "--temperature")],
)
def test_invalid_values_name_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        SamplingSettings(**kwargs)
