"""Fidelity check of ``--compat paper`` against the reference implementation's own code.

1. record: runs ``utils.completion_with_nudging`` (distribution blending) from a snapshot of
   github.com/DecayingSeart/BlendIn against two real llama-cpp-python servers holding the default pair
   (base Gemma-3-270M, guide SmolLM2-135M-Instruct), through the ``openai`` client as the reference
   does, recording every step by wrapping the clients' ``completions.create`` and the reference's
   ``compute_blend_alpha`` / ``sample_from_logprobs``. Its ``import tiktoken`` (GPT-3.5's tokenizer,
   which cannot be loaded offline) gets a stand-in whose ``encode`` returns one item per base request
   made for the current answer: the reference then stops after ``--max-tokens`` steps, as our paper
   mode's ``--max-tokens`` does.
2. free-running: our paper mode (``generate`` with ``compat="paper"``) on the same questions, against
   fresh servers: how many whole answers are identical.
3. teacher-forced: every recorded step decided again by our paper mode from the reference's own answer
   text before it (gate, α within 0.02, chosen string). A step whose answer text our free-running run
   also reached is taken from that run (the same request, made once).

Usage (from the repository root, models fetched):
    .venv/bin/python scripts/reference_compare.py --record tests/fixtures/paper/reference_steps.jsonl
    .venv/bin/python scripts/reference_compare.py --use tests/fixtures/paper/reference_steps.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/servers.py: the llama-cpp-python server fixture code

from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec  # noqa: E402
from blendin_local.generation.generate import generate  # noqa: E402
from blendin_local.pair import ModelPair  # noqa: E402
from blendin_local.paper import steps as paper_steps  # noqa: E402
from blendin_local.paper.fidelity import Report, load_recording, replay  # noqa: E402
from blendin_local.paper.reference import PAPER_SYSTEM, PaperDecision, paper_prefix  # noqa: E402
from blendin_local.prompts import QA_FORMAT, Conversation  # noqa: E402
from blendin_local.settings import GenerationSettings  # noqa: E402

SNAPSHOT = Path("/work/.mirror/DecayingSeart+BlendIn/repo")
BASE_MODEL, GUIDE_MODEL = "gemma3-270m", "smollm2-135m-instruct"  # the served names (--model_alias)
BASE_FILE, GUIDE_FILE = "gemma-3-270m-q4_k_m.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
    "Tom has 3 boxes with 12 apples each. He gives away 10 apples. How many apples does he have left?",
    "A train travels 60 miles per hour for 3 hours. How far does it travel?",
    "Sara buys 4 notebooks at $3 each and a pen for $2. How much does she spend in total?",
    "There are 24 students in a class. A third of them walk to school. How many students do not walk?",
    "A baker makes 5 trays of 18 cookies and sells 70 cookies. How many cookies are left?",
    "John reads 15 pages a day. How many days does he need to read a 210-page book?",
    "A farmer has 7 cows and each cow gives 9 liters of milk a day. How much milk is that in a week?",
    "Lisa had $50. She spent $18 on a book and $12 on lunch. How much money does she have now?",
]
# Names that exercise each of the reference's name-keyed templates (prompt layout check, no server).
TEMPLATE_NAMES = ["meta-llama/Llama-2-7b-chat-hf", "meta-llama/Meta-Llama-3-8B-Instruct",
                  "meta-llama/Llama-3.1-8B-Instruct", "google/gemma-2-2b-it",
                  "allenai/OLMo-2-1124-7B-Instruct",
                  "meta-llama/Llama-3.1-8B", "google/gemma-3-4b-pt", BASE_MODEL, GUIDE_MODEL]


# --- the reference, loaded from the snapshot --------------------------------------------------------
class StepCounter:
    """Base requests made for the current answer: the tiktoken stand-in's token count."""

    n = 0


def load_reference(snapshot: Path) -> tuple[types.ModuleType, str]:
    """Import the snapshot's ``utils.py`` with an offline ``tiktoken`` stand-in; (module, commit)."""
    stub = types.ModuleType("tiktoken")

    class Encoding:
        def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
            return [0] * StepCounter.n

    stub.encoding_for_model = lambda name: Encoding()  # type: ignore[attr-defined]
    sys.modules["tiktoken"] = stub
    folder = Path(tempfile.mkdtemp(prefix="blendin-reference-"))
    if (snapshot / "utils.py").exists():
        source = (snapshot / "utils.py").read_text(encoding="utf-8")
        commit = "working tree"
    else:
        git = ["git", f"--git-dir={snapshot}"]
        source = subprocess.run([*git, "show", "HEAD:utils.py"], check=True, capture_output=True,
                                text=True).stdout
        commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                                text=True).stdout.strip()
    (folder / "utils.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("utils"), commit
    finally:
        sys.path.remove(str(folder))


def record(utils: types.ModuleType, commit: str, base_url: str, guide_url: str, args: argparse.Namespace,
           out: Path) -> None:
    from openai import OpenAI

    client_base = OpenAI(api_key="EMPTY", base_url=base_url)
    client_guide = OpenAI(api_key="EMPTY", base_url=guide_url)
    steps: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    real_base, real_guide = client_base.completions.create, client_guide.completions.create
    real_alpha, real_sample = utils.compute_blend_alpha, utils.sample_from_logprobs

    def base_create(**kw: Any) -> Any:
        assert kw["prompt"].startswith(current["base_prefix"])
        response = real_base(**kw)
        StepCounter.n += 1
        lp = response.choices[0].logprobs
        if lp is None or not lp.tokens:  # the reference fails on this reply (no tokens[0])
            return response
        top = lp.top_logprobs[0]
        y = kw["prompt"][len(current["base_prefix"]):]
        steps.append({"q": current["q"], "i": len(current["steps"]), "y": y,
                      "intervened": False, "b": max(float(np.exp(v)) for v in top.values()),
                      "g": None, "alpha": None, "chosen": lp.tokens[0], "base_token": lp.tokens[0],
                      "finish_reason": response.choices[0].finish_reason, "tie": False,
                      "request": {k: v for k, v in kw.items() if k != "prompt"}})
        current["steps"].append(steps[-1])
        return response

    def guide_create(**kw: Any) -> Any:
        response = real_guide(**kw)
        lp = response.choices[0].logprobs
        if lp is None or not lp.tokens:  # the reference fails on this reply: no decision made
            steps[-1]["crashed"] = True
            return response
        top = lp.top_logprobs[0]
        steps[-1].update(intervened=True, g=max(float(np.exp(v)) for v in top.values()),
                         guide_request={k: v for k, v in kw.items() if k != "prompt"})
        return response

    def alpha(*a: Any, **kw: Any) -> float:
        steps[-1]["alpha"] = value = real_alpha(*a, **kw)
        return value

    def sample(logprobs: dict[str, float], temperature: float = 0.0) -> str:
        chosen = real_sample(logprobs, temperature=temperature)
        top = max(logprobs.values())
        steps[-1].update(chosen=chosen, tie=bool(sum(v == top for v in logprobs.values()) > 1))
        if steps[-1]["alpha"] is None:
            steps[-1]["alpha"] = args.alpha_value
        return chosen

    client_base.completions.create = base_create  # type: ignore[method-assign]
    client_guide.completions.create = guide_create  # type: ignore[method-assign]
    utils.compute_blend_alpha, utils.sample_from_logprobs = alpha, sample
    blend_alpha = "auto" if args.alpha_value is None else args.alpha_value
    answers = []
    t0 = time.perf_counter()
    for q, question in enumerate(QUESTIONS[: args.questions]):
        StepCounter.n = 0
        prefix = utils.apply_instruct_template(BASE_MODEL, PAPER_SYSTEM, "Question: " + question, "Answer: ")
        current.update(q=q, base_prefix=prefix, steps=[])
        try:
            info = utils.completion_with_nudging(
                base_model=BASE_MODEL, nudging_model=GUIDE_MODEL, question=question,
                client_base=client_base, client_nudging=client_guide, max_token_total=args.max_tokens,
                top_prob_thres=args.gamma, enable_distribution_blending=True, blend_alpha=blend_alpha)
            answer, stop, crash = info["raw_answer"], info["stop_reason"], None
        except IndexError as exc:  # a server's first token was its EOS: no tokens[0] to read
            if current["steps"] and current["steps"][-1].get("crashed"):
                steps.remove(current["steps"].pop())  # the step the reference failed on
            answer, stop, crash = "".join(s["chosen"] for s in current["steps"]), "crash", repr(exc)
        joined = "".join(s["chosen"] for s in current["steps"])
        assert crash or joined == answer, (joined, answer)
        answers.append({"q": q, "question": question, "answer": answer, "stop_reason": stop, "crash": crash,
                        "base_prefix": prefix,
                        "guide_prefix": utils.apply_instruct_template(GUIDE_MODEL, PAPER_SYSTEM,
                                                                      "Question: " + question, "Answer: ")})
        print(f"reference q{q}: {len(current['steps'])} steps, "
              f"{sum(s['intervened'] for s in current['steps'])} interventions, stop {stop}", flush=True)
    seconds = time.perf_counter() - t0
    ask = "Question: What is 2+2?"
    templates = [{"model": name, "system": PAPER_SYSTEM, "instruction": ask, "response": response,
                  "text": utils.apply_instruct_template(name, PAPER_SYSTEM, ask, response)}
                 for name in TEMPLATE_NAMES for response in ("Answer: ", "")]
    import llama_cpp
    import openai

    header = {
        "kind": "header",
        "produced_by": "scripts/reference_compare.py --record",
        "reference": f"github.com/DecayingSeart/BlendIn utils.py:completion_with_nudging at {commit}",
        "servers": f"llama-cpp-python {llama_cpp.__version__} `python -m llama_cpp.server` (n_ctx 1024, "
                   f"2 threads), base {BASE_FILE} as {BASE_MODEL!r}, guide {GUIDE_FILE} as {GUIDE_MODEL!r}",
        "client": f"openai {openai.__version__}",
        "tiktoken": "stand-in: encode() counts the base requests made for the answer (one per step)",
        "pythonhashseed": os.environ.get("PYTHONHASHSEED", "random"),
        "gamma": args.gamma, "alpha": blend_alpha, "max_tokens": args.max_tokens, "system": PAPER_SYSTEM,
        "top_p": 0.9, "steps": len(steps), "seconds": round(seconds, 1),
        "templates": templates,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        answer_records = ({"kind": "answer", **a} for a in answers)
        for rec in [header, *answer_records, *({"kind": "step", **s} for s in steps)]:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"recorded {len(steps)} steps of {len(answers)} answers in {seconds:.0f} s "
          f"({len(steps) / seconds:.2f} steps/s) -> {out}", flush=True)


# --- ours ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.base_url and args.guide_url:
        yield args.base_url, args.guide_url
        return
    from servers import llama_cpp_server

    models = ROOT / "models"
    with llama_cpp_server(models / BASE_FILE, BASE_MODEL) as b:
        with llama_cpp_server(models / GUIDE_FILE, GUIDE_MODEL) as g:
            yield b, g


def remotes(base_url: str, guide_url: str) -> tuple[RemoteModel, RemoteModel]:
    return RemoteModel(RemoteSpec(base_url, BASE_MODEL)), RemoteModel(RemoteSpec(guide_url, GUIDE_MODEL))


def compare(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    rec = load_recording(path)
    h = rec.header
    prompts_ok = all(paper_prefix(t["model"], t["system"], t["instruction"], t["response"]) == t["text"]
                     for t in h["templates"])
    prefixes_ok = all(
        paper_prefix(model, PAPER_SYSTEM, "Question: " + a["question"], "Answer: ") == a[key]
        for a in rec.answers for model, key in ((BASE_MODEL, "base_prefix"), (GUIDE_MODEL, "guide_prefix")))
    cache: dict[tuple[str, str], PaperDecision] = {}
    real_step = paper_steps.paper_step

    def cached_step(setup: paper_steps.PaperSetup, y: str) -> tuple[PaperDecision, float, float]:
        out = real_step(setup, y)
        cache[(setup.base_prefix, y)] = out[0]
        return out

    settings = GenerationSettings(method="blendin", gamma=h["gamma"],
                                  alpha=None if h["alpha"] == "auto" else float(h["alpha"]),
                                  compat="paper", max_tokens=h["max_tokens"])
    free = []
    t0 = time.perf_counter()
    paper_steps.paper_step = cached_step  # type: ignore[assignment]
    try:
        with servers(args) as (base_url, guide_url):
            base, guide = remotes(base_url, guide_url)
            for a in rec.answers:
                conv = Conversation.single(a["question"], system=PAPER_SYSTEM, plain=QA_FORMAT, chat=True)
                result = generate(ModelPair(base=base, guide=guide), conv, settings).run()
                free.append({"q": a["q"], "identical": result.text == a["answer"], "ours": result.text,
                             "reference": a["answer"], "tokens": result.tokens,
                             "interventions": result.interventions})
                print(f"ours q{a['q']}: identical={free[-1]['identical']}", flush=True)
    finally:
        paper_steps.paper_step = real_step  # type: ignore[assignment]
    free_seconds = time.perf_counter() - t0
    served = {"cache": 0, "asked": 0}

    def decide(setup: paper_steps.PaperSetup, q: int, y: str) -> PaperDecision:
        key = (setup.base_prefix, y)
        if key in cache:
            served["cache"] += 1
            return cache[key]
        served["asked"] += 1
        return real_step(setup, y)[0]

    report = Report()
    with servers(args) as (base_url, guide_url):
        base, guide = remotes(base_url, guide_url)
        for check in replay(rec, base, guide, decide=decide):
            report.checks.append(check)
    per_question = []
    for q in range(len(rec.answers)):
        qs = [c for c in report.checks if c.q == q]
        per_question.append({"q": q, "steps": len(qs), "agree": sum(c.agrees for c in qs),
                             "interventions": sum(s["intervened"] for s in rec.steps_of(q))})
    return {
        "recording": str(path), "prompt_layouts_identical": prompts_ok, "prefixes_identical": prefixes_ok,
        "teacher_forced": report.summary(), "teacher_forced_sources": served, "per_question": per_question,
        "free_running": {"identical": sum(f["identical"] for f in free), "answers": len(free),
                         "seconds": round(free_seconds, 1), "details": free},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", type=Path, help="run the reference, write its steps here, then compare")
    what.add_argument("--use", type=Path, help="compare with an existing recording")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT,
                        help="the reference's repository (bare or not)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--gamma", type=float, default=0.4)
    parser.add_argument("--alpha", default="auto")
    parser.add_argument("--base-url", help="use this running base server (…/v1) instead of starting one")
    parser.add_argument("--guide-url", help="use this running guide server (…/v1)")
    parser.add_argument("--report", type=Path, help="write the comparison as JSON here")
    args = parser.parse_args()
    args.alpha_value = None if args.alpha == "auto" else float(args.alpha)
    path = args.record or args.use
    if args.record:
        utils, commit = load_reference(args.snapshot)
        with servers(args) as (base_url, guide_url):
            record(utils, commit, base_url, guide_url, args, path)
    result = compare(path, args)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    summary = {k: v for k, v in result.items() if k not in ("free_running", "per_question")}
    summary["free_running"] = {k: v for k, v in result["free_running"].items() if k != "details"}
    print(json.dumps(summary, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
