from __future__ import annotations

import pytest

from blendin_local.errors import UsageError
from blendin_local.generation.generate import generate
from blendin_local.prompts import Conversation
from blendin_local.replay.teacher_forcing import replay
from blendin_local.settings import GenerationSettings

from fakes import cross_pair

CONV = Conversation.single("What is a b c?")


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize(("gamma", "alpha"), [(0.4, None), (0.7, 0.5), (2.0, None)])
def test_replay_of_a_greedy_generation_matches_at_every_step(batched, gamma, alpha) -> None:
    settings = GenerationSettings(gamma=gamma, alpha=alpha, max_tokens=30, guide_can_stop=False)
    pair = cross_pair(1.5, 3.0)
    gen = generate(pair, CONV, settings)
    steps = list(gen)
    rows = list(replay(pair, CONV, settings, [s.token for s in steps], batched=batched))
    assert len(rows) == len(steps)
    assert all(r.matches for r in rows), [r.index for r in rows if not r.matches]
    assert [r.intervened for r in rows] == [s.intervened for s in steps]
    assert [r.alpha for r in rows] == [s.alpha for s in steps]


def test_replay_reports_where_the_guide_would_change_a_base_answer() -> None:
    pair = cross_pair(1.0, 4.0)
    base_steps = list(generate(pair, CONV, GenerationSettings(method="base", max_tokens=25)))
    rows = list(replay(pair, CONV, GenerationSettings(gamma=2.0, alpha=1.0),
                       [s.token for s in base_steps]))
    assert all(r.intervened for r in rows)
    assert any(not r.matches for r in rows)  # a guide at α=1 disagrees somewhere
    assert all((r.provenance == "blend-guide") == (not r.matches) for r in rows)


def test_replay_refuses_methods_it_cannot_replay() -> None:
    with pytest.raises(UsageError, match="replay supports"):
        list(replay(cross_pair(), CONV, GenerationSettings(method="nudging"), "a b"))
    with pytest.raises(UsageError, match="empty"):
        list(replay(cross_pair(), CONV, GenerationSettings(), ""))
