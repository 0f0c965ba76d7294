"""Chat models (`model m = "..." (chat = true)`): the fixed text a tokenizer's chat template adds.

A chat model's prompt is the tokenizer's chat template (`tokenizer_config.json`
`chat_template`, or a `chat_template.jinja` file beside it) rendered around one
user message holding the rendered prompt, with the generation prompt added, as
transformers' `apply_chat_template(..., add_generation_prompt=True)` does at run
time. The static bound adds the template's own text to the prompt's bound: the
template is rendered once around a marker message, the marker must appear exactly
once (a template that drops, repeats or rewrites the message cannot be bounded this
way and is refused), and what surrounds it counts as literal text (its UTF-8 bytes,
as every literal in a prompt does). It is rendered again around the marker followed
by text a filter would change (newlines, `<>&"'`, case): the message must
come through verbatim and the rest stay the same, or the template is refused (QA
pass: `| e` or `| replace('\n', ...)` passed the marker check and `check` said "fits"
for prompts the run then refused). Rendering uses Jinja's sandbox; no torch.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ttcl.safeio import JSON_LIMIT, UnsafeRead, is_file, read_bounded

_MARK = "\x00ttcl-chat-message\x00"
# text that escaping, replacing or case filters change, written between two markers on a second render (inside
# them, so that a `| trim`, which only shortens a message, as Llama 3's template does, passes)
_PROBE = "\n\n<b>&amp;\"'`{%}#\\ Ab1\t "
# then every printable ASCII character and some beyond, and that at length, for a template whose text tests the
# message (QA pass: `{% if '+' in m['content'] %}` and `content|length > 70` passed the first probe)
_ASCII = "".join(map(chr, range(32, 127))) + "\n\té中🙂"
_PROBES = (_PROBE, _ASCII, _ASCII * 96)


class ChatTemplateError(ValueError):
    """A chat model whose template is missing or cannot be bounded; `hint` says what to do."""

    def __init__(self, message: str, hint: str = "add a `chat_template` to its tokenizer_config.json, "
                                                 "or drop `chat = true`") -> None:
        super().__init__(message)
        self.hint = hint


def chat_overhead(model_dir: Path) -> str:
    """The text the chat template adds around a message (the marker removed); raises ChatTemplateError."""
    return "".join(chat_parts(model_dir))


def chat_parts(model_dir: Path) -> tuple[str, str]:
    """The text the chat template writes before and after a message; raises ChatTemplateError. The run checks
    each prompt it sends is exactly these around the message, since no probe sees every message."""
    return _parts(str(model_dir.resolve()))


@lru_cache(maxsize=64)
def _parts(path: str) -> tuple[str, str]:
    template, config = _template(Path(path))
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 comes with transformers
        raise ChatTemplateError("rendering a chat template needs jinja2 (`pip install jinja2`)") from e

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    def render(content: str) -> str:
        try:
            return env.from_string(template).render(
                messages=[{"role": "user", "content": content}], add_generation_prompt=True, **specials)
        except Exception as e:  # a template is data: any failure to render is the model's defect, not ours
            raise ChatTemplateError(f"its chat template does not render: {type(e).__name__}: {str(e)[:200]}",
                                    "fix the template, or drop `chat = true`") from None

    text = render(_MARK)
    if text.count(_MARK) != 1:
        raise ChatTemplateError("its chat template does not contain the user's message exactly once, "
                                "so the prompt's length cannot be bounded",
                                "use a template that writes the message once, or drop `chat = true`")
    if any(render(_MARK + probe + _MARK) != text.replace(_MARK, _MARK + probe + _MARK) for probe in _PROBES):
        raise ChatTemplateError("its chat template changes the user's message (a filter on the content, or text "
                                "that depends on it), so the prompt's length cannot be bounded from the input's",
                                "use a template that writes the message as it is, or drop `chat = true`")
    before, after = text.split(_MARK)
    return before, after


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # an AddedToken written out as {"content": ...}
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _template(path: Path) -> tuple[str, dict[str, Any]]:
    config: dict[str, Any] = {}
    if is_file(path / "tokenizer_config.json"):
        try:
            loaded = json.loads(read_bounded(path / "tokenizer_config.json", JSON_LIMIT, what="tokenizer_config.json"))
        except (OSError, UnsafeRead, ValueError, RecursionError) as e:
            raise ChatTemplateError(f"cannot read its tokenizer_config.json: {e}") from None
        config = loaded if isinstance(loaded, dict) else {}
    template: Any = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is None and is_file(path / "chat_template.jinja"):
        try:
            template = read_bounded(path / "chat_template.jinja", JSON_LIMIT, what="chat_template.jinja").decode("utf-8")
        except (OSError, UnsafeRead, UnicodeDecodeError) as e:
            raise ChatTemplateError(f"cannot read its chat_template.jinja: {e}") from None
    if not isinstance(template, str) or not template.strip():
        raise ChatTemplateError("it has no chat template (no `chat_template` in tokenizer_config.json, "
                                "no chat_template.jinja)")
    return template, config
