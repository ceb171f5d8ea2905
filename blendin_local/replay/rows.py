"""What ``replay`` reports at each step (token-level in :mod:`.teacher_forcing`, text-level in
:mod:`.text`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ReplayRow:
    index: int
    token: int  # the continuation's token at this step
    text: str
    intervened: bool
    b: float
    g: float | None
    alpha: float | None
    chosen: int  # the token the method would pick (greedy on its final distribution)
    # (token and chosen are -1 in a text replay, --support top100 or a remote base: steps are
    # pieces of text there, see replay_text)
    chosen_text: str
    matches: bool
    provenance: str  # of the chosen token: base / blend-agree / blend-guide
    p_token: float  # the continuation token's probability under the final distribution

    def to_record(self) -> dict[str, Any]:
        return asdict(self)
