"""The decoding runtime: one answer (:mod:`.generate`) and many at once (:mod:`.many`)
over one loop (:mod:`.driver`), the state a run shares (:mod:`.decoding`), what it yields
(:mod:`.steps`), samplers, stop strings and the guide's KV sync."""
