"""``--compat paper``: the reference implementation's decisions (:mod:`.reference`), its
loop over two servers (:mod:`.steps`) and how closely we reproduce it (:mod:`.fidelity`)."""
