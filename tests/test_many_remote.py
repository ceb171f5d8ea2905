"""Many answers at once with the driving model on a server (``many._InFlight``): up to ``batch``
requests in flight, each answer with its own remote state; against a scripted server answers and
request counts equal one-at-a-time ones exactly, against a real batching server each answer finishes
in order within its request bound; a scripted server's fault ends only its answer."""

from __future__ import annotations

import math
import threading
import time

import pytest

from blendin_local import generate_many
from blendin_local.engines.remote.engine import RemoteError, RemoteModel, RemoteSpec
from blendin_local.generation.generate import Generation
from blendin_local.generation.many import Finished
from blendin_local.generation.steps import StopReason
from blendin_local.pair import ModelPair, prompt_for
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes.servers import completion_chunk, scripted_server, send_json, send_sse_head

QUESTIONS = ["Why is the sky blue?", "What is 12 times 7?", "Name three prime numbers.",
             "What is the capital of France?", "How do plants make food?"]


def conversations(questions: list[str]) -> list[Conversation]:
    return [Conversation.single(q) for q in questions]


def rendered(base: RemoteModel, convs: list[Conversation]) -> None:
    """Ask the server to render each prompt now (one request per conversation, cached and shared by
    the model's clones), so that answers count only their completions requests."""
    for conv in convs:
        prompt_for(base, conv, role="base")


@pytest.mark.integration
@pytest.mark.parametrize("method", ["base", "blendin"])
def test_answers_in_flight_against_a_batching_server(native_gemma_server_4, real_pair, method):
    """llama-server with 4 slots batches the 4 requests in flight. (llama-cpp-python's server
    cannot: by default a new request interrupts the one it is streaming.)

    Its batched arithmetic is not its one-request arithmetic (spec §11): a near-tie can part an
    answer from the one-at-a-time answer (seen: 0 to 2 of these 5, in different runs), so exact
    equality is the scripted-server tests' (below); here every answer must finish, in input order,
    within its request bound, counting its own requests on its own clone of the model."""
    base = RemoteModel(RemoteSpec(native_gemma_server_4, "gemma3-270m"), timeout=120)
    pair = ModelPair(base=base, guide=real_pair.guide)
    settings = GenerationSettings(method=method, support="top100", gamma=0.5, max_tokens=24)
    convs = conversations(QUESTIONS)
    rendered(base, convs)
    alone = [Generation(pair, conv, settings).run() for conv in convs]
    before = base.traffic.requests
    many = generate_many(pair, convs, settings, batch=4)
    assert many.batched and not many.note
    together = many.run()
    assert base.traffic.requests == before  # every answer used a clone, counting its own requests
    same = sum(a.text == b.text for a, b in zip(together, alone, strict=True))
    print(f"\n{method}: {same} of {len(convs)} answers equal one-at-a-time answers")
    for got, want in zip(together, alone, strict=True):
        assert got.text.strip() and got.remote is not None
        # input order: each answer starts as the one-at-a-time answer to the same question
        assert got.text.split()[:1] == want.text.split()[:1]
        requests, k = got.remote["base"]["requests"], got.remote["base"].get("largest_chunk", 1)
        assert 1 <= k <= base.chunk_tokens  # K of the bound: the largest chunk the answer asked
        assert 0 < requests <= got.interventions + math.ceil(got.tokens / k) + 1
    if method == "blendin":
        assert sum(r.interventions for r in together) > 0  # the local guide was consulted
    base.close()


def busy(state: dict, lock: threading.Lock, seconds: float) -> None:
    """Hold a request for ``seconds``, recording in ``state["most"]`` how many were in flight at
    once."""
    with lock:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
    time.sleep(seconds)
    with lock:
        state["now"] -= 1


def slow_server(state: dict, lock: threading.Lock, *, fail: str | None = None):
    """A completions server taking 0.3 s per request (recording how many were in flight at once);
    a prompt containing ``fail`` gets 400."""

    def completions(h, body):
        if fail is not None and fail in body["prompt"]:
            send_json(h, 400, {"error": {"message": "this prompt is refused"}})
            return
        busy(state, lock, 0.3)
        send_sse_head(h)
        h.wfile.write(completion_chunk([" 4"]).encode()
                      + completion_chunk(["."], finish="stop").encode() + b"data: [DONE]\n\n")

    return {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]}),
            "POST /v1/completions": completions}


def test_up_to_batch_requests_are_in_flight_and_results_keep_input_order():
    state, lock = {"now": 0, "most": 0}, threading.Lock()
    questions = [f"Question {n}?" for n in range(8)]
    with scripted_server(slow_server(state, lock)) as (url, _):
        base = RemoteModel(RemoteSpec(url, "m"), timeout=30)
        pair = ModelPair(base=base, guide=None)
        settings = GenerationSettings(method="base", support="top100", max_tokens=8)
        convs = conversations(questions)
        rendered(base, convs)
        results = generate_many(pair, convs, settings, batch=4).run()
        one = generate_many(pair, conversations(questions[:2]), settings, batch=1)
        assert not one.batched
        one.run()
        base.close()
    assert state["most"] == 4
    assert [r.text for r in results] == [" 4."] * 8
    assert all(r.remote is not None and r.remote["base"]["requests"] == 1 for r in results)


def test_one_answers_server_fault_ends_that_answer_alone():
    state, lock = {"now": 0, "most": 0}, threading.Lock()
    questions = [f"Question {n}?" for n in range(4)]
    with scripted_server(slow_server(state, lock, fail="Question 2?")) as (url, _):
        base = RemoteModel(RemoteSpec(url, "m"), timeout=30)
        pair = ModelPair(base=base, guide=None)
        settings = GenerationSettings(method="base", support="top100", max_tokens=8)
        many = generate_many(pair, conversations(questions), settings, batch=4)
        finished = {e.index: e for e in many.stream() if isinstance(e, Finished)}
        with pytest.raises(RemoteError, match="answered 400 on /completions: this prompt is refused"):
            generate_many(pair, conversations(questions), settings, batch=4).run()
        base.close()
    assert sorted(finished) == [0, 1, 2, 3]
    error = finished[2].error
    assert isinstance(error, RemoteError) and "\n" not in str(error)
    assert "400" in str(error) and finished[2].result is None
    for i in (0, 1, 3):
        assert finished[i].error is None and finished[i].result is not None
        assert finished[i].result.text == " 4."


def test_cancel_stops_every_answer_in_flight():
    """A server streaming one token per 0.2 s: cancel after the first step ends all four answers
    before their next token, and the waiting ones never start."""
    started: list[str] = []

    def completions(h, body):
        started.append(body["prompt"])
        send_sse_head(h)
        try:
            for _ in range(body["max_tokens"]):
                h.wfile.write(completion_chunk([" x"]).encode())
                h.wfile.flush()
                time.sleep(0.2)
            h.wfile.write(completion_chunk([], finish="length").encode() + b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    handlers = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]}),
                "POST /v1/completions": completions}
    with scripted_server(handlers) as (url, _):
        base = RemoteModel(RemoteSpec(url, "m"), timeout=30)
        pair = ModelPair(base=base, guide=None)
        settings = GenerationSettings(method="base", support="top100", max_tokens=16)
        many = generate_many(pair, conversations([f"Q{n}" for n in range(8)]), settings, batch=4)
        finished = []
        for event in many.stream():
            if isinstance(event, Finished):
                finished.append(event)
            elif not finished and len(started) == 4:
                many.cancel()
        base.close()
    assert len(started) == 4 and len(finished) == 4
    assert all(e.result is not None and e.result.stop_reason is StopReason.CANCELLED
               and e.result.tokens < 16 for e in finished)


def paper_server(role: str, state: dict, lock: threading.Lock):
    """A one-token completions server for ``--compat paper`` (0.05 s a request, recording how many
    were in flight at once): the base writes " w" and is unsure after every third word (so the
    guide is asked, and writes " g"); it ends its text once the prompt has 7 + (question number)
    words of answer, so answers differ in length."""

    def completions(h, body):
        busy(state, lock, 0.05)
        words = body["prompt"].split("Answer:")[-1].split()
        question = int(body["prompt"].split("Question ")[-1][0])
        if role == "guide":
            token, top = " g", {" g": -0.1, " w": -2.5}
        elif len(words) >= 7 + question:
            send_json(h, 200, {"choices": [{"text": "", "logprobs": None, "finish_reason": "stop"}]})
            return
        else:
            unsure = len(words) % 3 == 2
            token, top = " w", ({" w": -0.9, " v": -1.0} if unsure else {" w": -0.05, " x": -3.0})
        lp = {"tokens": [token], "token_logprobs": [top.get(token, -0.1)], "top_logprobs": [top],
              "text_offset": [0]}
        send_json(h, 200, {"choices": [{"text": token, "logprobs": lp, "finish_reason": "length"}]})

    return {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": role}]}),
            "POST /v1/completions": completions}


def test_paper_mode_keeps_requests_in_flight_with_one_at_a_time_answers():
    """``--compat paper`` drives two servers, so it runs in flight like any remote base: up to
    ``batch`` answers at once, each answer (text, steps, interventions, requests) as one at a time."""
    state, lock = {"now": 0, "most": 0}, threading.Lock()
    with scripted_server(paper_server("base", state, lock)) as (base_url, _), \
            scripted_server(paper_server("guide", state, lock)) as (guide_url, _):
        base = RemoteModel(RemoteSpec(base_url, "base"), timeout=30)
        guide = RemoteModel(RemoteSpec(guide_url, "guide"), timeout=30)
        pair = ModelPair(base=base, guide=guide)
        settings = GenerationSettings(method="blendin", compat="paper", gamma=0.5, alpha=0.5,
                                      max_tokens=12, support="top100")
        convs = conversations([f"Question {n}?" for n in range(6)])
        # one at a time, each answer on its own clones (their traffic counts are its own)
        alone = [Generation(ModelPair(base=base.clone(), guide=guide.clone()), conv, settings).run()
                 for conv in convs]
        assert state["most"] == 1
        many = generate_many(pair, convs, settings, batch=4)
        assert many.batched and not many.note
        together = many.run()
    assert state["most"] == 4
    assert len({r.tokens for r in alone}) > 1 and sum(r.interventions for r in alone) > 0
    for got, want in zip(together, alone, strict=True):
        assert (got.text, got.tokens, got.interventions, got.stop_reason) == \
            (want.text, want.tokens, want.interventions, want.stop_reason)
        assert got.remote is not None and want.remote is not None
        for role in ("base", "guide"):
            assert got.remote[role]["requests"] == want.remote[role]["requests"]
