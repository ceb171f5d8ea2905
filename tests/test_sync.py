"""TextSync on a fake tokenizer: the incremental ids equal tokenising the whole text."""

from __future__ import annotations

from blendin_local.generation.sync import TextSync, complete_utf8_prefix

from fakes import fake_guide


def test_incremental_ids_equal_whole_tokenisation() -> None:
    guide = fake_guide()
    prefix = b"<|start|>user\nthe a b<|end|>\n<|start|>assistant\n"
    sync = TextSync(guide, prefix, add_bos=False)
    text = b"the abc he the a  b\n\nthe abcabc x.the"
    for cut in range(0, len(text) + 1, 3):
        y = text[:cut]
        ids = sync.canonical(y)
        assert ids == guide.tokenize(prefix + y), cut


def test_update_evaluates_only_the_new_suffix() -> None:
    guide = fake_guide()
    sync = TextSync(guide, b"<|start|>assistant\n", add_bos=False)
    sync.update(b"the a")
    n_first = guide.evaluated_tokens
    sync.update(b"the a b")
    assert guide.tokens == guide.tokenize(b"<|start|>assistant\nthe a b")
    assert guide.evaluated_tokens - n_first <= 3


def test_incomplete_utf8_is_held_back() -> None:
    e = "é".encode()
    assert complete_utf8_prefix(b"ab" + e[:1]) == b"ab"
    assert complete_utf8_prefix(b"ab" + e) == b"ab" + e
    emoji = "😀".encode()
    assert complete_utf8_prefix(emoji[:3]) == b""
    assert complete_utf8_prefix(b"x") == b"x"
