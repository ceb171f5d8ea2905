"""--support top100 against an independent, plain dict-of-strings version of the reference rule."""

from __future__ import annotations

import numpy as np
import pytest

from blendin_local.generation.generate import generate
from blendin_local.generation.steps import Provenance
from blendin_local.methods.strings import string_intervention, top100_choice
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes import cross_pair


def reference_rule(p_base, p_guide, base_strings, guide_strings, alpha):
    """What the reference does with two servers' top-100 logprob dicts, written out plainly."""
    def top_dict(p, strings):
        ranked = sorted(range(len(p)), key=lambda i: (-p[i], i))[:100]
        d = {}
        for i in ranked:  # a later (lower-ranked) duplicate string overwrites the earlier one
            d[strings[i]] = float(p[i])
        return d

    bd, gd = top_dict(p_base, base_strings), top_dict(p_guide, guide_strings)
    if alpha is None:
        g_best = max(gd, key=lambda s: gd[s])
        b, g = max(p_base), max(p_guide)
        alpha = min(1.0, max(0.0, g / (b + g) + 0.1 * bd.get(g_best, 0.0)))
    union = dict.fromkeys(list(bd) + list(gd))
    mixed = {s: alpha * gd.get(s, 0.0) + (1 - alpha) * bd.get(s, 0.0) for s in union}
    z = sum(mixed.values())
    mixed = {s: v / z for s, v in mixed.items()}
    return max(mixed, key=lambda s: mixed[s]), mixed


def random_strings(rng, n, pool):
    return [pool[i] for i in rng.integers(0, len(pool), n)]


@pytest.mark.parametrize("alpha", [None, 0.0, 0.3, 1.0])
def test_top100_equals_the_reference_rule(alpha) -> None:
    rng = np.random.default_rng(0)
    pool = [f"w{i}" for i in range(400)] + ["", " ", "é"]
    for _ in range(30):
        nb, ng = 700, 500
        base_strings = random_strings(rng, nb, pool)
        guide_strings = random_strings(rng, ng, pool)
        # force two highly ranked tokens to share a string
        p_base = rng.dirichlet(np.full(nb, 0.1)).astype(np.float32)
        p_guide = rng.dirichlet(np.full(ng, 0.1)).astype(np.float32)
        order = np.argsort(-p_base)
        base_strings[order[1]] = base_strings[order[0]]
        mixed, used_alpha, _, _ = top100_choice(p_base, p_guide, base_strings, guide_strings, alpha)
        want_choice, want = reference_rule(p_base, p_guide, base_strings, guide_strings, alpha)
        assert set(mixed) == set(want)
        for s in want:
            assert mixed[s] == pytest.approx(want[s], rel=1e-6, abs=1e-9)
        assert max(mixed, key=mixed.__getitem__) == want_choice


def test_duplicate_strings_keep_the_lower_ranked_probability() -> None:
    p_base = np.array([0.6, 0.3, 0.1], dtype=np.float32)
    p_guide = np.array([1.0], dtype=np.float32)
    mixed, _, _, _ = top100_choice(p_base, p_guide, ["x", "x", "y"], ["z"], 0.0)
    # "x" has the probability of its second (lower-ranked) token, 0.3, renormalised with 0.1
    assert mixed["x"] == pytest.approx(0.3 / 0.4)
    assert mixed["y"] == pytest.approx(0.1 / 0.4)


def test_one_string_intervention_blends_chooses_and_names_its_provenance() -> None:
    bd, gd = {"x": 0.6, "y": 0.4}, {"y": 0.9, "z": 0.1}
    sb = string_intervention(bd, gd, 0.6, 0.9, 0.5)  # greedy by default
    assert sb.mixed == pytest.approx({"x": 0.3, "y": 0.65, "z": 0.05})
    assert list(sb.mixed) == ["x", "y", "z"]  # the base's strings first, then the guide's new ones
    assert (sb.chosen, sb.base_top, sb.guide_top) == ("y", "x", "y")
    assert sb.provenance is Provenance.BLEND_GUIDE
    agree = string_intervention(bd, gd, 0.6, 0.9, 0.5, choose=lambda mixed: "x")
    assert agree.chosen == "x" and agree.provenance is Provenance.BLEND_AGREE
    auto = string_intervention(bd, gd, 0.6, 0.9, None)
    assert auto.alpha == pytest.approx(0.9 / 1.5 + 0.1 * 0.4)  # g / (b + g) + 0.1 · p_base(guide's top)


def test_top100_generation_runs_and_reports_its_steps() -> None:
    gen = generate(cross_pair(1.0, 3.0), Conversation.single("What is a b?"),
                   GenerationSettings(support="top100", gamma=0.6, max_tokens=20))
    steps = list(gen)
    r = gen.result
    assert steps and "".join(s.text for s in steps) == r.text
    assert r.interventions == sum(s.intervened for s in steps) > 0


def test_string_overlaps_count_shared_strings_among_each_top_k() -> None:
    from blendin_local.methods.strings import string_overlaps

    base = {f"b{i}": 1.0 / (i + 1) for i in range(20)} | {"x": 0.9, "y": 0.8}
    guide = {"x": 0.5, "y": 0.01, "z": 0.3}
    o10, o100 = string_overlaps(base, guide)
    assert o10 == pytest.approx(0.2)  # "x" and "y": both in each model's top 10
    assert o100 == pytest.approx(0.02)
