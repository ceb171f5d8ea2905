from blendin_local.generation.output import OutputText


def test_stop_string_split_across_tokens_is_held_back_then_cut() -> None:
    out = OutputText(("\nQuestion:",))
    shown = [out.push(p) for p in [b" Paris", b".", b"\n", b"Quest", b"ion", b":"]]
    assert shown[:2] == [" Paris", "."]
    assert shown[2:5] == ["", "", ""]  # could still become the stop string
    assert out.stopped and out.text == " Paris."
    assert "".join(shown) == out.text


def test_a_false_start_is_released_when_it_cannot_be_a_stop() -> None:
    out = OutputText(("\nQuestion:",))
    shown = [out.push(p) for p in [b"a", b"\n", b"Que", b"en"]]
    assert "".join(shown) == "a\nQueen" and not out.stopped


def test_utf8_split_across_tokens_is_shown_whole() -> None:
    out = OutputText()
    e = "é".encode()
    shown = [out.push(e[:1]), out.push(e[1:] + b"!")]
    assert shown == ["", "é!"]
    assert out.finish() == ""


def test_finish_releases_held_text_and_flushes_bad_bytes() -> None:
    out = OutputText(("STOP",))
    text = out.push(b"xST") + out.finish()
    assert text == "xST"
    out = OutputText()
    assert out.push(b"\xe2\x82") + out.finish() == "\ufffd"
