"""The answer text as it grows: stop strings with hold-back, and UTF-8 decoded for display."""

from __future__ import annotations

import codecs


class OutputText:
    """Accumulates answer bytes ``y``; releases text for display only when no stop string could
    still be starting, and cuts the answer at the first stop string."""

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.y = b""
        self._stops = tuple(s.encode() for s in stops if s)
        self._released = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Append a token's bytes; returns the text that can be shown now."""
        self.y += piece
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            return self._release(cut, final=True)
        return self._release(len(self.y) - self._held_back())

    def finish(self) -> str:
        """Release everything that is left (end of generation without a stop string)."""
        return self._release(len(self.y), final=True)

    @property
    def text(self) -> str:
        return self.y.decode("utf-8", errors="replace")

    def _first_stop(self) -> int | None:
        start = max(0, self._released - max((len(s) for s in self._stops), default=0))
        hits = [i for s in self._stops if (i := self.y.find(s, start)) >= 0]
        if not hits:
            return None
        cut = min(hits)
        self.y = self.y[:cut]
        return cut

    def _held_back(self) -> int:
        """Longest suffix of ``y`` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stops:
            for n in range(min(len(s) - 1, len(self.y)), best, -1):
                if self.y.endswith(s[:n]):
                    best = n
                    break
        return best

    def _release(self, upto: int, final: bool = False) -> str:
        upto = max(upto, self._released)
        chunk = self.y[self._released : upto]
        self._released = upto
        return self._decoder.decode(chunk, final=final)
