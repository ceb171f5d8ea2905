"""Library use: one answer streamed, then many answers decoded together.

Run from the repository root after `make run` (or `make models`):
    .venv/bin/python docs/examples/library.py
"""

from blendin_local import Conversation, GenerationSettings, generate, generate_many, load_pair

pair = load_pair("gemma3-270m", "smollm2-135m-instruct", n_ctx=1024)
settings = GenerationSettings(method="blendin", gamma=0.4, max_tokens=48)

# One answer: iterate the steps as they are made, then read the summary.
gen = generate(pair, Conversation.single("Why is the sky blue?"), settings)
for step in gen:
    print(step.text, end="", flush=True)
r = gen.result
print(f"\n[{r.tokens} tokens, {r.interventions} interventions, stop: {r.stop_reason.value}]\n")

# Many answers: up to `batch` share each llama_decode; results come back in input order.
questions = ["What is the capital of France?", "Name three primary colours.",
             "How many legs does a spider have?", "Who wrote Hamlet?"]
results = generate_many(pair, [Conversation.single(q) for q in questions], settings, batch=4).run()
for q, r in zip(questions, results):
    print(f"{q} -> {r.text.strip()[:70]!r} ({r.tokens} tokens, {r.interventions} interventions)")
