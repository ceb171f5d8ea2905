"""Replay over a base on a server: one scoring request for the whole text where the server can
(llama-cpp-python's server, real, holding the default base), one per step where it cannot (a scripted
server that refuses ``echo`` as llama.cpp's native server does), and bad bodies as one line."""

from __future__ import annotations

import json
import math

import pytest

from blendin_local.engines.remote.engine import RemoteError, RemoteModel, RemoteSpec
from blendin_local.engines.remote.scoring import PromptScorer
from blendin_local.errors import UsageError
from blendin_local.pair import ModelPair
from blendin_local.prompts import QA_FORMAT, Conversation
from blendin_local.replay.teacher_forcing import replay
from blendin_local.settings import GenerationSettings

from fakes.servers import scripted_server, send_json, send_sse_head

# A short system prompt: llama-cpp-python's server sorts the whole vocabulary in Python for every
# scored position (~0.8 s each on 2 cores), and an echo request scores the prompt's positions too.
CONV = Conversation.single("What is 2+2?", system="Be brief.", plain=QA_FORMAT)
ANSWER = " 4, because two plus two is four."
# |Δb| between one batch over the whole text and one evaluation per step: llama.cpp's batch shapes
# move Gemma's logits (spec §9); measured here up to ~0.05 at a step
B_TOLERANCE = 0.1


def settings(**kw: object) -> GenerationSettings:
    return GenerationSettings(support="top100", gamma=0.5, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def remote_pair(gemma_server, real_pair) -> ModelPair:
    base = RemoteModel(RemoteSpec(gemma_server, "gemma3-270m"), timeout=300)
    return ModelPair(base=base, guide=real_pair.guide)


@pytest.mark.integration
def test_remote_replay_batched_equals_per_step_and_local_top100(remote_pair, real_pair):
    base = remote_pair.base
    assert isinstance(base, RemoteModel)
    scorer = PromptScorer(base)
    before = base.traffic.requests
    batched = list(replay(remote_pair, CONV, settings(), ANSWER, scorer=scorer))
    batched_requests = base.traffic.requests - before
    assert scorer.can_score is True
    before = base.traffic.requests
    per_step = list(replay(remote_pair, CONV, settings(), ANSWER, batched=False))
    per_step_requests = base.traffic.requests - before
    # one scoring request (plus one for the prompt alone when a token straddles its end)
    assert batched_requests <= 2 and per_step_requests == len(per_step)
    assert "".join(r.text for r in batched) == ANSWER
    assert [r.text for r in per_step] == [r.text for r in batched]
    assert any(r.intervened for r in batched) and any(not r.intervened for r in batched)
    local = list(replay(real_pair, CONV, settings(), ANSWER))
    assert [r.text for r in local] == [r.text for r in batched]
    # the server's one batch, its per-step requests and our own batch differ only numerically
    for other in (per_step, local):
        assert_same_decisions(batched, other)


def assert_same_decisions(rows, others) -> None:
    worst = max(abs(a.b - b.b) for a, b in zip(rows, others, strict=True))
    same = sum((a.intervened, a.chosen_text) == (b.intervened, b.chosen_text)
               for a, b in zip(rows, others, strict=True))
    print(f"max |Δb| {worst:.4f}; same gate and pick at {same}/{len(rows)} steps")
    for a, b in zip(rows, others, strict=True):
        assert a.b == pytest.approx(b.b, abs=B_TOLERANCE), (a, b)
        if abs(b.b - 0.5) > B_TOLERANCE:  # away from the gate: the same gate, the same pick
            assert (a.intervened, a.chosen_text) == (b.intervened, b.chosen_text), (a, b)


@pytest.mark.integration
def test_remote_replay_refuses_full_support(remote_pair):
    with pytest.raises(UsageError, match="needs full distributions.*use --support top100"):
        list(replay(remote_pair, CONV, GenerationSettings(), ANSWER))


# --- a server that cannot score a prompt, and bad bodies ----------------------------------------
def send_position(h, token: str, top: dict[str, float]) -> None:
    """A streamed one-token completions answer (what ``next_position`` asks for), its top list
    padded to the 100 alternatives asked with unlikely filler strings (fewer reads as a server cap)."""
    top = {**top, **{f"\x01{i}": -30.0 for i in range(100 - len(top))}}
    choice = {"text": token, "index": 0, "finish_reason": "length", "logprobs": {
        "tokens": [token], "token_logprobs": [top[token]], "top_logprobs": [top],
        "text_offset": [0]}}
    send_sse_head(h)
    h.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\ndata: [DONE]\n\n".encode())


def test_a_server_refusing_echo_is_asked_once_per_step_and_remembered():
    """As llama.cpp's native server: 400 "Only no echo is supported"; then one request per step,
    each step's piece the longest top string the rest of the text starts with."""
    bodies: list[dict] = []

    def completions(h, body):
        bodies.append(body)
        if body.get("echo"):
            send_json(h, 400, {"error": {"code": 400, "message": "Only no echo is supported",
                                         "type": "invalid_request_error"}})
            return
        rest = ANSWER[len(body["prompt"].split("Answer:", 1)[1]):]
        word = rest[:1] + rest[1:].split(" ")[0] if rest.startswith(" ") else rest.split(" ")[0]
        top = {word: math.log(0.9), word[:1]: math.log(0.05), "zzz": math.log(0.01)}
        send_position(h, word, top)

    with scripted_server({"POST /v1/completions": completions}) as (url, seen):
        pair = ModelPair(base=RemoteModel(RemoteSpec(url, "m"), retries=0, template="plain"))
        scorer = PromptScorer(pair.base)  # type: ignore[arg-type]
        base_only = GenerationSettings(method="base", support="top100")
        rows = list(replay(pair, CONV, base_only, ANSWER, scorer=scorer))
        again = list(replay(pair, CONV, base_only, ANSWER, scorer=scorer))
    assert scorer.can_score is False and "one request per step" in scorer.mode
    assert sum(bool(b.get("echo")) for b in bodies) == 1  # probed once, remembered
    assert [r.text for r in rows] == [" 4,", " because", " two", " plus", " two", " is", " four."]
    assert rows == again and all(r.matches and r.b == pytest.approx(0.9) for r in rows)
    assert len(seen) == 1 + 2 * len(rows)


@pytest.mark.parametrize(("body", "needle"), [
    ({"choices": []}, "not OpenAI's completions shape"),
    ({"choices": [{"text": "x", "logprobs": None}]}, "returned no logprobs"),
    ({"choices": [{"text": "x", "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, -1.0],
                                             "top_logprobs": [None, {"b": -1.0}]}}]},
     "without a text_offset per token"),
    ({"choices": [{"text": "x", "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, "?"],
                                             "top_logprobs": [None, {"b": -1.0}],
                                             "text_offset": [0, 1]}}]},
     "not OpenAI's completions shape: a token logprob is not a number"),
    ({"choices": [{"text": "x", "logprobs": {
        "tokens": ["a", "b", "c"], "token_logprobs": [None, -1.0, -1.0],
        "top_logprobs": [None, {"b": -1.0}, {"c": -1.0}], "text_offset": [0, 5, 2]}}]},
     "out of order"),
])
def test_bad_scoring_bodies_are_one_line(body, needle):
    with scripted_server({"POST /v1/completions": lambda h, _: send_json(h, 200, body)}) as (url, _):
        scorer = PromptScorer(RemoteModel(RemoteSpec(url, "m"), retries=0))
        with pytest.raises(RemoteError) as exc:
            scorer.score("some text to score")
    message = str(exc.value)
    assert "\n" not in message and needle in message, message


def test_a_body_that_is_not_json_is_one_line():
    def garbage(h, _):
        data = b"<html>hello</html>"
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    with scripted_server({"POST /v1/completions": garbage}) as (url, _):
        scorer = PromptScorer(RemoteModel(RemoteSpec(url, "m"), retries=0))
        with pytest.raises(RemoteError, match="not JSON"):
            scorer.score("text")


def test_replay_cli_over_a_scripted_server_without_echo(tmp_path):
    """The command end to end: remote base, one line per fault, the request count printed."""
    from click.testing import CliRunner

    from blendin_local.cli import cli

    def completions(h, body):
        if body.get("echo"):
            send_json(h, 400, {"error": {"message": "Only no echo is supported"}})
            return
        top = {" 4": math.log(0.3), " four": math.log(0.2)}
        send_position(h, " 4", top)

    handlers = {"POST /v1/completions": completions,
                "GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]})}
    out = tmp_path / "rows.jsonl"
    with scripted_server(handlers) as (url, _):
        result = CliRunner().invoke(cli, [
            "replay", "--base", f"{url}#m", "--method", "base", "--support", "top100",
            "--system", "Be brief.", "--continuation", " 4", "--out", str(out),
            "What is 2+2?"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "1 request(s) so far" not in said and "(one request per step (the server cannot score " \
        "a prompt))" in said and "replay (base, top100, γ=0.4) item 0" in said
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["text"], r["chosen_text"], r["matches"]) for r in rows] == [(" 4", " 4", True)]
    assert rows[0]["b"] == pytest.approx(0.3)


@pytest.mark.integration
def test_diagnose_over_a_server_reports_from_top_k_strings(gemma_server, tmp_path):
    """diagnose with the base on a server: the same report, its top-k approximations named."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("blendin-local")
    proc = subprocess.run(
        [str(script), "diagnose", "--base", f"{gemma_server}#gemma3-270m", "--limit", "1",
         "--max-tokens", "4", "--json", "--figure", str(tmp_path / "d.png")],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["steps"] == 4 and report["coverage"] == {}
    assert any("top-k *string* sets" in a for a in report["approximations"])
    rows = {r["gamma"]: r for r in report["by_gamma"]}
    assert 0.0 <= rows[0.4]["rate"] <= 1.0
    hits = [r for r in report["by_gamma"] if r["interventions"]]
    assert hits and all(0.0 <= r["overlap10"] <= 1.0 and 0.0 <= r["overlap100"] <= 1.0
                        for r in hits)
    assert report["verdict"] in ("PROMISING", "MIXED", "UNLIKELY TO HELP", "LITTLE EFFECT")
    assert (tmp_path / "d.png").exists()
