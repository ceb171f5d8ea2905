"""The one table of decoding limits (:mod:`blendin_local.limits`): the CLI's option types, the
library's settings and the server read it, so a bad value gets the same message from each."""

from __future__ import annotations

import math

import pytest

from blendin_local.errors import UsageError
from blendin_local.generation.sampling import SamplingSettings
from blendin_local.limits import SEED_MAX, check, parse
from blendin_local.serve.schema import api_message
from blendin_local.settings import GenerationSettings

BAD = [  # (name, value, message)
    ("seed", -1, "--seed must be an integer from 0 to 4294967295, got -1"),
    ("seed", SEED_MAX + 1, "--seed must be an integer from 0 to 4294967295, got 4294967296"),
    ("seed", 1e20, "--seed must be an integer from 0 to 4294967295, got 1e+20"),
    ("seed", True, "--seed must be an integer from 0 to 4294967295, got True"),
    ("max_tokens", 0, "--max-tokens must be an integer >= 1, got 0"),
    ("max_tokens", "4", "--max-tokens must be an integer >= 1, got '4'"),
    ("max_tokens", 4.0, "--max-tokens must be an integer >= 1, got 4.0"),
    ("max_tokens", True, "--max-tokens must be an integer >= 1, got True"),
    ("gamma", -0.1, "--gamma must be a number >= 0 (> 1: always intervene), got -0.1"),
    ("gamma", math.nan, "--gamma must be a number >= 0 (> 1: always intervene), got nan"),
    ("gamma", "0.3", "--gamma must be a number >= 0 (> 1: always intervene), got '0.3'"),
    ("temperature", -1, "--temperature must be a number >= 0 (0 = greedy), got -1"),
    ("temperature", False, "--temperature must be a number >= 0 (0 = greedy), got False"),
    ("top_k", -1, "--top-k must be an integer >= 0 (0 = off), got -1"),
    ("top_k", 1.5, "--top-k must be an integer >= 0 (0 = off), got 1.5"),
    ("top_p", 0, "--top-p must be a number in (0, 1], got 0"),
    ("min_p", 1.0, "--min-p must be a number in [0, 1), got 1.0"),
    ("cap", 0.0, "--cap must be an intervention rate in (0, 1], got 0.0"),
    ("alpha", 1.5, "--alpha must be 'auto' or a number in [0, 1], got 1.5"),
    ("final_top", 101, "final_top (top logprobs) must be an integer from 0 to 100, got 101"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_bad_values_are_refused_naming_the_flag_and_the_value(name, value, message):
    with pytest.raises(UsageError) as exc:
        check(name, value)
    assert str(exc.value) == message


@pytest.mark.parametrize(("name", "value"), [
    ("seed", 0), ("seed", SEED_MAX), ("max_tokens", 1), ("gamma", 0), ("gamma", 2.5),
    ("gamma", math.inf), ("temperature", 0), ("temperature", 1), ("top_p", 1), ("min_p", 0),
    ("cap", 1), ("alpha", 0), ("final_top", 100), ("top_k", 0),
])
def test_values_within_the_limits_pass(name, value):
    check(name, value)


@pytest.mark.parametrize(("name", "text", "value"), [
    ("seed", " 42 ", 42), ("max_tokens", "8", 8), ("gamma", "0.5", 0.5), ("gamma", "inf", math.inf),
    ("top_p", "1", 1.0),
])
def test_the_command_line_text_is_parsed(name, text, value):
    assert parse(name, text) == value


@pytest.mark.parametrize(("name", "text"), [
    ("seed", "1.5"), ("seed", "-1"), ("max_tokens", "abc"), ("max_tokens", "0"), ("gamma", "nan"),
    ("top_k", "1e3"), ("temperature", "hot"),
])
def test_bad_command_line_text_is_quoted_as_given(name, text):
    with pytest.raises(UsageError, match=f"got {text!r}$"):
        parse(name, text)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: SamplingSettings(seed=-1), "--seed must be an integer from 0 to 4294967295, got -1"),
    (lambda: SamplingSettings(seed=2**64), "--seed must be an integer from 0 to 4294967295"),
    (lambda: SamplingSettings(top_k=2.5), "--top-k must be an integer >= 0 (0 = off), got 2.5"),
    (lambda: GenerationSettings(max_tokens="4"), "--max-tokens must be an integer >= 1, got '4'"),
    (lambda: GenerationSettings(max_tokens=True), "--max-tokens must be an integer >= 1, got True"),
    (lambda: GenerationSettings(gamma=math.nan), "--gamma must be a number >= 0"),
    (lambda: GenerationSettings(cap=0), "--cap must be an intervention rate in (0, 1], got 0"),
])
def test_the_library_checks_with_the_same_table(build, message):
    with pytest.raises(UsageError) as exc:
        build()
    assert str(exc.value).startswith(message)


def test_the_server_names_its_field_in_the_same_words():
    with pytest.raises(UsageError) as exc:
        SamplingSettings(seed=-1)
    assert api_message(str(exc.value)) == "seed must be an integer from 0 to 4294967295, got -1"


def test_parse_can_name_the_option_that_takes_a_list_of_them():
    with pytest.raises(UsageError) as exc:
        parse("gamma", "x", flag="--gammas")
    assert str(exc.value) == "--gammas must be a number >= 0 (> 1: always intervene), got 'x'"
    assert parse("gamma", "1.5", flag="--gammas") == 1.5
