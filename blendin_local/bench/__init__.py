"""``blendin-local bench``: speed against the physical limits (:mod:`.speed`), chat TTFT
(:mod:`.chat`), a base on a server (:mod:`.remote`) and many answers at once (:mod:`.throughput`)."""
