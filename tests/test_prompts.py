from blendin_local.prompts import (
    CHAT_FORMAT,
    QA_FORMAT,
    Conversation,
    Message,
    render,
    render_plain,
)

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_plain_format_is_the_references() -> None:
    conv = Conversation.single("What is 2+2?", system="Be brief.", plain=QA_FORMAT)
    assert render_plain(conv) == "Be brief.\nQuestion: What is 2+2?\nAnswer:"
    assert QA_FORMAT.next_turn_stop == "\nQuestion:"


def test_multi_turn_plain_chat() -> None:
    conv = Conversation(
        messages=(Message("user", "hi"), Message("assistant", "hello"), Message("user", "bye")),
        system="", plain=CHAT_FORMAT,
    )
    assert render_plain(conv) == "User: hi\nAssistant: hello\nUser: bye\nAssistant:"


def test_jinja_template_from_metadata() -> None:
    conv = Conversation.single("Hi?", system="S")
    r = render(conv, chat_template=CHATML, bos="", eos="<|im_end|>")
    assert r.templated
    assert r.text.decode() == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_broken_template_falls_back_by_vocabulary_markers() -> None:
    conv = Conversation.single("Hi?", system="")
    r = render(conv, chat_template="{% for %}", bos="<s>", eos="</s>",
               vocab_markers=frozenset({"<|im_start|>"}))
    assert r.text.decode() == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_template_that_writes_bos_gets_no_second_one() -> None:
    conv = Conversation.single("Hi?", system="")
    r = render(conv, chat_template="{{ bos_token }}{{ messages[0]['content'] }}", bos="<bos>",
               eos="")
    assert r.text == b"<bos>Hi?" and not r.add_bos


def test_base_without_template_and_raw_mode() -> None:
    conv = Conversation.single("Hi?", system="")
    assert not render(conv, chat_template=None, bos="", eos="", use_template=False).templated
    raw = render(Conversation.single("The capital is", chat=False), chat_template=CHATML, bos="",
                 eos="")
    assert raw.text == b"The capital is"
