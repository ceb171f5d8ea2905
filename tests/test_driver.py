"""The one decoding driver (``blendin_local/generation/driver.py``) with scripted picks on the fake engine: a
multi-token pick iterator ended mid-run (token limit, stop string, cancel) is closed there; a full
context, end-of-generation by the guide and an ``End`` end the answer; held-back text is flushed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from blendin_local.engines.base import Engine, Eval, run_eval
from blendin_local.generation.decoding import Decoding
from blendin_local.generation.driver import End, Event, Pick, Picks, PicksAt, drive, own_picks
from blendin_local.generation.generate import Generation
from blendin_local.generation.steps import Provenance, Step, StopReason
from blendin_local.prompts import Conversation
from blendin_local.settings import GenerationSettings

from fakes import cross_pair, fake_base

RAW = Conversation.single("the a b", chat=False)


def text_step(index: int, piece: bytes) -> Callable[[str, float], Step]:
    def describe(text: str, t_model: float) -> Step:
        return Step(index=index, token=-1, piece=piece, text=text, provenance=Provenance.BASE,
                    intervened=False, b=None, t_base=t_model)

    return describe


class Run:
    """A scripted method: each call streams ``run`` text pieces (as a remote base's chunk does),
    counting calls and how many of its iterators were closed."""

    def __init__(self, pieces: list[bytes], *, run: int = 5) -> None:
        self.pieces, self.run = pieces, run
        self.calls: list[int] = []
        self.closed = 0

    def __call__(self, index: int) -> Picks:
        self.calls.append(index)
        try:
            for _ in range(self.run):
                piece = self.pieces[index % len(self.pieces)]
                yield Pick(text_step(index, piece), piece=piece)
                index += 1
        finally:
            self.closed += 1


class Scripted(Generation):
    """A ``Generation`` whose steps come from ``drive`` over scripted picks."""

    def __init__(self, picks_at: PicksAt, settings: GenerationSettings, conv: Conversation = RAW,
                 **drive_kw: object) -> None:
        super().__init__(cross_pair(), conv, settings)
        self.picks_at, self.drive_kw = picks_at, drive_kw

    def _steps(self) -> Iterator[Event]:
        return drive(self, self.picks_at, **self.drive_kw)  # type: ignore[arg-type]


def settings(**kw: object) -> GenerationSettings:
    return GenerationSettings(method="base", **kw)  # type: ignore[arg-type]


def test_several_picks_per_call_and_the_run_cut_by_the_token_limit_is_closed() -> None:
    method = Run([b"x", b"y"], run=5)
    gen = Scripted(method, settings(max_tokens=12))
    steps = list(gen)
    assert [s.index for s in steps] == list(range(12))
    assert method.calls == [0, 5, 10]  # asked again where a run ran out
    assert method.closed == 3  # the third run, cut after 2 of its 5 picks, was closed
    assert gen.result.stop_reason is StopReason.MAX_TOKENS
    assert "".join(s.text for s in steps) == "xy" * 6


def test_a_stop_string_inside_a_run_ends_the_answer_there_and_closes_the_run() -> None:
    method = Run([b"a", b"b", b"c"], run=10)
    gen = Scripted(method, settings(max_tokens=50, stop=("bca",)))
    steps = list(gen)
    assert gen.result.stop_reason is StopReason.STOP_STRING
    assert len(steps) == 4 and method.calls == [0] and method.closed == 1
    assert "".join(s.text for s in steps) == gen.result.text == "a"  # "bc" held back, then cut


def test_a_cancel_inside_a_run_ends_the_answer_before_the_next_pick() -> None:
    method = Run([b"z"], run=10)
    gen = Decoding(cross_pair(), RAW, settings(max_tokens=50))
    seen = []
    for event in drive(gen, method):
        assert isinstance(event, Step)
        seen.append(event)
        if len(seen) == 3:
            gen.cancel()  # the driver's own check, with no Generation around it
    assert len(seen) == 3 and gen.stop_reason is StopReason.CANCELLED
    assert method.closed == 1


def test_a_cancel_before_the_first_step_asks_the_method_nothing() -> None:
    method = Run([b"z"])
    gen = Decoding(cross_pair(), RAW, settings(max_tokens=5))
    gen.cancel()
    assert list(drive(gen, method)) == [] and method.calls == []
    assert gen.stop_reason is StopReason.CANCELLED


def test_an_end_item_ends_the_answer_without_a_step_and_closes_the_run() -> None:
    closed = []

    def picks_at(index: int) -> Picks:
        try:
            yield Pick(text_step(index, b"q"), piece=b"q")
            yield End(StopReason.EOS)
            yield Pick(text_step(index + 1, b"never"), piece=b"never")
        finally:
            closed.append(index)

    gen = Scripted(picks_at, settings(max_tokens=10))
    assert [s.piece for s in gen] == [b"q"] and closed == [0]
    assert gen.result.stop_reason is StopReason.EOS


def test_an_empty_string_chosen_by_the_guide_ends_with_guide_eos_and_flushes_held_back_text() -> None:
    pieces = [b"a", b"\nQ", b""]

    def picks_at(index: int) -> Picks:
        piece = pieces[index]
        yield Pick(text_step(index, piece), piece=piece, ends=not piece, by_guide=True)

    # "\nQ" may start the plain format's next-turn stop: held back until the end flushes it
    gen = Scripted(picks_at, settings(max_tokens=10), conv=Conversation.single("Hi"))
    steps = list(gen)
    assert [s.text for s in steps] == ["a", "", "\nQ"]
    assert gen.result.stop_reason is StopReason.GUIDE_EOS


def test_the_token_limit_flushes_held_back_text_in_the_last_step() -> None:
    def picks_at(index: int) -> Picks:
        yield Pick(text_step(index, b"\nQ"), piece=b"\nQ")

    gen = Scripted(picks_at, settings(max_tokens=1), conv=Conversation.single("Hi"))
    assert [s.text for s in gen] == ["\nQ"] and gen.result.stop_reason is StopReason.MAX_TOKENS


def test_an_end_token_picked_for_the_guide_is_guide_eos() -> None:
    pair = cross_pair()
    assert pair.base is not None

    def picks_at(index: int) -> Picks:
        yield Pick(text_step(index, b""), token=pair.base.eos_id, by_guide=True)

    gen = Decoding(pair, RAW, settings(max_tokens=5))
    steps = list(drive(gen, picks_at, engine=pair.base))
    assert len(steps) == 1 and gen.stop_reason is StopReason.GUIDE_EOS


def evaluated(gen: Decoding, events: Iterator[Event]) -> list[Event]:
    """Run the driver's requests at once, as ``Generation`` does, keeping every event."""
    out = []
    for event in events:
        if isinstance(event, Eval):
            run_eval(event)
        out.append(event)
    return out


def test_the_driver_evaluates_each_token_before_its_step_until_the_context_is_full() -> None:
    engine = fake_base(n_ctx=12)
    gen = Decoding(cross_pair(), RAW, settings(max_tokens=50))
    n_prompt = len(engine.tokenize(b"the a b", add_bos=True))
    events = evaluated(gen, drive(gen, never_ending(engine), engine=engine, evaluate_as="base"))
    steps = [e for e in events if isinstance(e, Step)]
    evals = [e for e in events if isinstance(e, Eval)]
    assert gen.stop_reason is StopReason.CONTEXT_FULL
    assert len(engine.tokens) == 12 and len(steps) == 12 - n_prompt + 1  # the last one unevaluated
    assert [len(e.ids) for e in evals[1:]] == [1] * (len(steps) - 1)  # after the prompt: a token each
    assert isinstance(events[-1], Step) and isinstance(events[-2], Step)  # no request after the last


def never_ending(engine: Engine) -> PicksAt:
    """Picks ``engine``'s most likely ordinary token (never an end) at every step."""
    pieces = engine.pieces()

    def picks_at(index: int) -> Picks:
        ordinary = [i for i in range(len(pieces)) if i not in engine.control_ids()]
        token = max(ordinary, key=lambda i: float(engine.logits()[i]))
        yield Pick(text_step(index, pieces[token]), token=token)

    return picks_at


def test_a_method_keeping_its_own_model_on_the_answer_stops_where_its_context_is_full() -> None:
    engine = fake_base(n_ctx=8)
    engine.eval(engine.tokenize(b"a b c d e f g h", add_bos=False)[:8])
    gen = Decoding(cross_pair(), RAW, settings(max_tokens=5))
    method = Run([b"x"])
    assert list(drive(gen, method, engine=engine)) == [] and method.calls == []
    assert gen.stop_reason is StopReason.CONTEXT_FULL


def test_own_picks_take_the_prompt_time_then_each_tokens_evaluation_as_the_models_time() -> None:
    pair = cross_pair()
    assert pair.guide is not None
    gen = Decoding(pair, Conversation.single("Hi"), settings(max_tokens=4), driver="guide")
    events = evaluated(gen, drive(gen, own_picks(gen, pair.guide, Provenance.GUIDE),
                                  engine=pair.guide, evaluate_as="guide"))
    steps = [e for e in events if isinstance(e, Step)]
    evals = [e for e in events if isinstance(e, Eval)]
    assert steps and all(s.provenance is Provenance.GUIDE and s.t_base == 0.0 for s in steps)
    # step i+1's model time is the evaluation of token i, requested before step i is yielded
    for step, request in zip(steps[1:], evals[1:], strict=False):
        assert step.t_guide == request.seconds
