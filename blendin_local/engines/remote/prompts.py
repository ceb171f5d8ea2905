"""How a model behind a server sees the conversation. The completions API does not expose a chat
template, so ``RemoteModel.template`` says where the prompt's layout comes from:

- a built-in template by name (``chatml``, ``llama3``, ``gemma``, ``llama2``, ``olmo``);
- ``plain``: the reference's ``Question: … / Answer:`` format (the default for a base);
- ``auto`` (the default for a guide): the server renders the model's own template where it can
  (llama.cpp's ``POST /apply-template``); where it cannot, :func:`resolve_template` falls back to
  ``plain`` and returns a one-line warning for the CLI to print.
"""

from __future__ import annotations

from ...prompts import TEMPLATES, Conversation, RenderedPrompt, render
from .engine import RemoteModel

# A server adds the model's BOS itself (vLLM, llama.cpp): a rendered one would be a second BOS.
_BOS_TEXTS = ("<|begin_of_text|>", "<bos>", "<s>")


def _messages(conv: Conversation) -> list[dict[str, str]]:
    system = [{"role": "system", "content": conv.system}] if conv.system else []
    return system + [{"role": m.role, "content": m.content} for m in conv.messages]


def _without_bos(text: str) -> str:
    for bos in _BOS_TEXTS:
        if text.startswith(bos):
            return text[len(bos):]
    return text


def resolve_template(model: RemoteModel, role: str) -> str | None:
    """For ``auto``: ask the server once whether it renders the model's template; if not, switch
    ``model`` to ``plain`` and return the warning to print (None when nothing to say)."""
    if model.template != "auto":
        return None
    if model.apply_template([{"role": "user", "content": "Hi"}]) is not None:
        return None
    model.template = "plain"
    return (f"the {role} at {model.spec.url} does not expose its chat template (no POST "
            f"/apply-template): it gets the plain Question/Answer format; name one with "
            f"--{role}-template {'|'.join(TEMPLATES)}")


def remote_prompt(model: RemoteModel, conv: Conversation) -> RenderedPrompt:
    """The prompt text sent to ``model`` (the server adds BOS: ``add_bos`` is False)."""
    if not conv.chat:
        return RenderedPrompt(conv.messages[-1].content.encode(), add_bos=False, templated=False)
    name = model.template
    text: str | None = None
    if name == "auto":
        key = repr(_messages(conv))
        if key not in model.rendered:  # one request per conversation, not per step
            model.rendered[key] = model.apply_template(_messages(conv))
        text = model.rendered[key]
    elif name in TEMPLATES:
        msgs = [(m["role"], m["content"]) for m in _messages(conv)]
        text = TEMPLATES[name](msgs)
    if text is None:
        plain = render(conv, chat_template=None, bos="", eos="", use_template=False)
        return RenderedPrompt(plain.text, add_bos=False, templated=False)
    return RenderedPrompt(_without_bos(text).encode(), add_bos=False, templated=True)


def set_templates(models: dict[str, object], templates: dict[str, str]) -> list[str]:
    """Give each remote model among ``models`` (by role) its ``templates[role]`` and resolve
    ``auto``; returns the warnings to print."""
    warnings = []
    for role, model in models.items():
        if isinstance(model, RemoteModel):
            model.template = templates.get(role, "auto" if role == "guide" else "plain")
            warning = resolve_template(model, role)
            if warning:
                warnings.append(warning)
    return warnings
