"""The paper-exact step (blendin_local/paper/reference.py): hand-computable cases and the reference's
layouts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from blendin_local.errors import UsageError
from blendin_local.generation.sampling import SamplingSettings
from blendin_local.paper.reference import (
    PaperReply,
    decide,
    greedy,
    paper_alpha,
    paper_blend,
    paper_prefix,
)
from blendin_local.settings import GenerationSettings

RECORDING = Path(__file__).parent / "fixtures" / "paper" / "reference_steps.jsonl"


def lp(**probs: float) -> dict[str, float]:
    return {k: math.log(v) for k, v in probs.items()}


def test_plain_layout_keeps_the_trailing_space() -> None:
    text = paper_prefix("gemma3-270m", "Sys.", "Question: Q?", "Answer: ")
    assert text == "Sys.\nQuestion: Q?\nAnswer: "


@pytest.mark.parametrize(("name", "start"), [
    ("meta-llama/Llama-2-7b-chat-hf", "[INST] <<SYS>>\nS\n<</SYS>>\n\nI [/INST] A"),
    ("Llama-3.1-8B-Instruct", "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date"),
    ("Meta-Llama-3-8B-Instruct", "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"),
    ("google/gemma-2-2b-it", "<start_of_turn>user\nS\nI<end_of_turn>\n<start_of_turn>model\nA "),
    ("OLMo-2-7B-Instruct", "<|endoftext|><|user|>\nS\nI\n<|assistant|>\nA "),
    ("Llama-3.1-8B", "S\nI\nA "),  # a base model: plain
])
def test_name_keyed_templates(name: str, start: str) -> None:
    assert paper_prefix(name, "S", "I", "A ").startswith(start)


def test_layouts_equal_the_references_own_renderings() -> None:
    """The recording holds the reference's apply_instruct_template output for several names."""
    header = json.loads(RECORDING.read_text(encoding="utf-8").splitlines()[0])
    assert len(header["templates"]) >= 10
    for t in header["templates"]:
        assert paper_prefix(t["model"], t["system"], t["instruction"], t["response"]) == t["text"], t["model"]


def test_auto_alpha_is_relative_confidence_plus_the_agreement_bonus() -> None:
    base, guide = {"a": 0.3, "b": 0.2}, {"b": 0.9, "c": 0.1}
    # g/(b+g) = 0.9/1.2 = 0.75; the base gives the guide's top "b" 0.2 → +0.02
    assert paper_alpha(base, guide) == pytest.approx(0.77)
    assert paper_alpha({"a": 0.5}, {"c": 0.5}) == pytest.approx(0.5)  # no agreement: no bonus


def test_blend_is_over_the_union_and_renormalised() -> None:
    out = paper_blend({"a": 0.5, "b": 0.3}, {"b": 0.6, "c": 0.4}, 0.5)
    probs = {k: math.exp(v) - 1e-10 for k, v in out.items()}
    total = 0.25 + 0.45 + 0.2
    assert probs == pytest.approx({"a": 0.25 / total, "b": 0.45 / total, "c": 0.2 / total})
    assert list(out) == ["a", "b", "c"]


def test_greedy_reports_ties() -> None:
    assert greedy({"x": -1.0, "y": -0.5, "z": -0.5}) == ("y", True)
    assert greedy({"x": -1.0, "y": -0.5}) == ("y", False)


def test_confident_step_takes_the_servers_token_not_the_dict_top() -> None:
    asked = []
    reply = PaperReply(token="B", top=lp(A=0.6, B=0.3), finish_reason="length")
    d = decide(reply, lambda: asked.append(1) or reply, gamma=0.4, alpha=None)
    assert (d.chosen, d.intervened, d.base_top, asked) == ("B", False, "A", [])
    assert d.b == pytest.approx(0.6)


def test_unsure_step_asks_the_guide_and_blends() -> None:
    base = PaperReply(token="A", top=lp(A=0.35, B=0.3), finish_reason="stop")
    guide = PaperReply(token="B", top=lp(B=0.8, C=0.2), finish_reason="length")
    d = decide(base, lambda: guide, gamma=0.4, alpha=0.5)
    # 0.5·{B .8, C .2} + 0.5·{A .35, B .3} → B .55 wins; the base's stop still ends the answer
    assert (d.chosen, d.intervened, d.alpha, d.guide_top, d.stop) == ("B", True, 0.5, "B", True)
    assert d.g == pytest.approx(0.8)


def test_later_duplicate_strings_overwrite() -> None:
    """A JSON object listing a string twice keeps the later value (json.loads, as the client)."""
    top = json.loads('{"x": -0.1, "y": -2.0, "x": -3.0}')
    d = decide(PaperReply("y", top, None), lambda: PaperReply("x", {"x": 0.0}, None), 0.4, None)
    assert d.b == pytest.approx(math.exp(-2.0)) and d.intervened


def test_no_token_back_ends_the_answer() -> None:
    d = decide(PaperReply(None, {}, "stop"), lambda: pytest.fail("guide asked"), 0.4, None)
    assert (d.chosen, d.stop) == ("", True)


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"method": "nudging"}, "--compat paper runs"),
    ({"cap": 0.2}, "--cap"),
    ({"sampling": SamplingSettings(temperature=0.7)}, "decodes greedily"),
    ({"sampling": SamplingSettings(top_p=0.9)}, "--top-p"),
])
def test_paper_settings_refuse_what_the_reference_lacks(kwargs: dict, flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        GenerationSettings(compat="paper", **kwargs)


def test_compat_is_recorded_only_when_paper() -> None:
    assert "compat" not in GenerationSettings().to_dict()
    assert GenerationSettings(compat="paper").to_dict()["compat"] == "paper"
    with pytest.raises(UsageError, match="--compat"):
        GenerationSettings(compat="vllm")


def test_a_guide_that_ends_at_once_ends_the_answer() -> None:
    """Where the reference fails (the guide server returns no token), paper mode ends the answer."""
    base = PaperReply(token="A", top=lp(A=0.2, B=0.1), finish_reason="length")
    d = decide(base, lambda: PaperReply(None, {}, "stop"), gamma=0.4, alpha=None)
    assert (d.chosen, d.intervened, d.stop) == ("", True, True)
