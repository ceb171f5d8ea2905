"""``check_pair``: each method's needs against the engines' capabilities, once, with one error.

Library-level checks on fake engines and an unstarted remote model (no request is sent before the
check), then every refusal through the CLI against a small scripted server (one line, exit 2)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from blendin_local.engines.remote.engine import RemoteModel, RemoteSpec
from blendin_local.errors import UsageError
from blendin_local.models import default_model
from blendin_local.pair import ModelPair
from blendin_local.pair_check import check_pair
from blendin_local.settings import GenerationSettings

from fakes import cross_pair, fake_guide
from fakes.servers import scripted_server, send_json

SCRIPT = Path(sys.executable).with_name("blendin-local")
URL = "http://127.0.0.1:9/v1"


def remote(limit: int | None = 100) -> RemoteModel:
    model = RemoteModel(RemoteSpec(URL, "m"))
    model.capabilities = dataclasses.replace(model.capabilities, top_logprobs=limit)
    return model


def refusal(pair: ModelPair, **settings: object) -> str:
    with pytest.raises(UsageError) as err:
        check_pair(pair, GenerationSettings(**settings))  # type: ignore[arg-type]
    return str(err.value)


def test_local_pairs_run_every_method_and_return_its_spec():
    pair = cross_pair()
    assert check_pair(pair, GenerationSettings(method="blendin")).name == "blendin"
    assert check_pair(pair, GenerationSettings(method="nudging", support="top100")).events


def test_missing_models_are_named():
    assert refusal(ModelPair(base=None, guide=fake_guide())) == "method 'blendin' needs a base model (--base)"
    assert refusal(ModelPair(base=cross_pair().base), method="nudging") == \
        "method 'nudging' needs a guide model (--guide)"
    assert "needs --anti-expert MODEL" in refusal(cross_pair(), method="proxy")


def test_a_remote_base_is_checked_against_what_the_method_needs():
    pair = ModelPair(base=remote(), guide=fake_guide())
    assert refusal(pair) == (f"method blendin --support full needs full distributions; the base at {URL} "
                             "gives top-100 logprobs: use --support top100")
    assert check_pair(pair, GenerationSettings(support="top100")).name == "blendin"
    assert check_pair(pair, GenerationSettings(method="base")).name == "base"
    assert check_pair(pair, GenerationSettings(method="nudging")).name == "nudging"
    assert "decodes greedily" in refusal(pair, support="top100",
                                         sampling=dataclasses.replace(GenerationSettings().sampling,
                                                                      temperature=0.7))


def test_a_server_allowing_fewer_logprobs_than_the_blend_needs():
    pair = ModelPair(base=remote(limit=20), guide=fake_guide())
    assert refusal(pair, support="top100") == (
        f"method blendin needs 100 logprobs per position; the server at {URL} allows 20: start vLLM "
        "with --max-logprobs 100")


def test_a_remote_guide_where_full_distributions_are_needed():
    pair = ModelPair(base=cross_pair().base, guide=remote())
    assert refusal(pair) == (
        f"method blendin --support full needs full distributions; the guide at {URL} gives top-100 "
        "logprobs: use --support top100")
    assert check_pair(pair, GenerationSettings(method="nudging")).name == "nudging"
    assert check_pair(pair, GenerationSettings(support="top100")).name == "blendin"


@pytest.mark.parametrize(("args", "line"), [
    (["--method", "ensemble"], "error: method ensemble --support full needs full distributions; the base "
                               "at {url} gives top-100 logprobs: use --support top100"),
    (["--support", "full"], "error: method blendin --support full needs full distributions; the base "
                            "at {url} gives top-100 logprobs: use --support top100"),
    (["--method", "proxy"], "error: method 'proxy' needs --anti-expert MODEL (the guide's untuned "
                            "counterpart)"),
    (["--method", "proxy", "--anti-expert", default_model("guide")],
     "error: method proxy needs full distributions from the base; the base at {url} gives top-100 "
     "logprobs: run the base locally (a GGUF), or use a method that runs with a base on a server: "
     "blendin, base, nudging, ensemble"),
    (["--method", "ensemble", "--support", "top100", "--temperature", "0.5"],
     "error: a base on a server decodes greedily (the paper's setting): use --temperature 0"),
])
def test_every_refusal_through_the_cli_is_one_line(args, line):
    models = {"GET /v1/models": lambda h, _: send_json(h, 200, {"data": [{"id": "m"}]})}
    with scripted_server(models) as (url, seen):
        proc = subprocess.run([str(SCRIPT), "generate", "--base", f"{url}#m", *args, "Hi"],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [line.format(url=url)]
    assert set(seen) <= {"GET /v1/models"}  # refused before any completions request
