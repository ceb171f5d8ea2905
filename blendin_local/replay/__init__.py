"""Replay (teacher forcing, spec §6): token-level (:mod:`.teacher_forcing`), text-level
(:mod:`.text`) and the rows both report (:mod:`.rows`)."""
