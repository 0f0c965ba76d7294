"""The OpenAI wire shape of `ttcl serve`: its errors, the fields it refuses, the input it reads from a request,
and how a strategy's outcome reads as a response (`finish_reason`, or an error). No FastAPI app and no scheduler
here: those are `ttcl.serve`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request

from ttcl.runtime.accountant import input_over_bound
from ttcl.runtime.dataset import not_unicode

MAX_BODY_BYTES = 4 << 20  # a request's body; the input itself is bounded far lower, by the strategy's text[<=N]


class ApiError(Exception):
    """An OpenAI-style error response."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def refuse_unsupported(body: dict[str, Any]) -> None:
    """Fields a strategy cannot honour are a 400, not dropped: a client that asks for tool calls, a JSON schema or
    log-probabilities would read a plain answer as if they had been applied (QA pass: accepted and ignored)."""
    if body.get("tools") or body.get("tool_choice") not in (None, "none"):
        raise ApiError(400, "a strategy returns one answer and calls no tools: leave out `tools` and `tool_choice`",
                       param="tools")
    if body.get("functions") or body.get("function_call") not in (None, "none"):  # the older spelling of tools
        raise ApiError(400, "a strategy returns one answer and calls no functions: leave out `functions` and "
                       "`function_call`", param="functions")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise ApiError(400, "a strategy's answer is plain text: `response_format` other than {\"type\": \"text\"} "
                       "is not supported", param="response_format")
    if (body.get("logprobs") is not None and body.get("logprobs") is not False) or body.get("top_logprobs") is not None:
        # (`logprobs: 0` asks /v1/completions for the sampled tokens' log-probabilities; `0 in (None, False)` let
        # it through, QA pass)
        raise ApiError(400, "a strategy's answer comes from many samples and has no log-probabilities: leave out "
                       "`logprobs`", param="logprobs")
    if body.get("echo") not in (None, False):
        raise ApiError(400, "a strategy's answer does not restate the prompt: leave out `echo`", param="echo")
    if body.get("best_of") not in (None, 1):
        raise ApiError(400, "`best_of` is the strategy's to choose (its program samples and picks); leave it out, or "
                       "serve a best-of-n program", param="best_of")
    if body.get("suffix"):
        raise ApiError(400, "a strategy answers a prompt and does not fill in text before a `suffix`; leave it out",
                       param="suffix")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ApiError(400, "a strategy answers in text only: `modalities` other than [\"text\"] is not supported",
                       param="modalities")
    if not isinstance(body.get("stream", False), bool | None):
        raise ApiError(400, "stream must be true or false", param="stream")


def wants_usage_chunk(body: dict[str, Any]) -> bool:
    """A stream's usage chunk is sent unless the client declines it (`stream_options.include_usage: false`)."""
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    return (options or {}).get("include_usage") is not False


def outcome_error(result: dict[str, Any], chat: bool) -> ApiError | None:
    """A finished request that is an error, not an answer: an input over its bound in a way the counts before the
    run could not see (a chat template, a server's tokenizer), or a strategy that failed without an answer (QA
    pass: a 200 with an empty answer and finish_reason "stop")."""
    why = input_over_bound(result, "messages" if chat else "prompt")
    if why is not None:
        return ApiError(400, why, param="messages" if chat else "prompt", code="input_too_long")
    if result["status"] == "failed" and result["answer"] is None:
        # not retried by the client (`x-should-retry: false`): each try runs, and charges, the strategy again; the
        # openai client retried a 500 twice by default (QA pass)
        return ApiError(500, f"the strategy failed: {result['error']}", type_="server_error", code="strategy_failed",
                        headers={"x-should-retry": "false"})
    return None


def finish_reason(result: dict[str, Any]) -> str:
    """OpenAI's `finish_reason`: "length" when the budget stopped the strategy (its answer, if any, comes from the
    steps that ran, as a completion cut at `max_tokens`), else "stop" (QA pass: "stop" either way)."""
    return "length" if result["status"] == "stopped" else "stop"


def question_of(body: dict[str, Any], chat: bool) -> str:
    """The strategy's input: the last user message (chat; its text parts joined) or the one `prompt`."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list", param="messages")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise ApiError(400, "no user message: the last user message is the strategy's input", param="messages")
        content = users[-1].get("content")
        if isinstance(content, list):
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if not all(isinstance(t, str) for t in texts):  # `"text": 7` was a TypeError and a plain 500 (QA pass)
                raise ApiError(400, "a text part's `text` must be a string", param="messages")
            content = "".join(texts)
    else:
        content = body.get("prompt")
        if isinstance(content, list) and len(content) == 1:
            content = content[0]
    if isinstance(content, list) and content and all(isinstance(t, int) or isinstance(t, list) for t in content):
        raise ApiError(400, "a prompt of token ids is not supported: send the prompt as text", param="prompt")
    if isinstance(content, list):  # a batch of prompts: one strategy call answers one input
        raise ApiError(400, f"`prompt` is a list of {len(content)} prompts; send one prompt per request",
                       param="prompt")
    if not isinstance(content, str) or not content.strip():
        raise ApiError(400, "the input text is empty or not text", param="messages" if chat else "prompt")
    if (why := not_unicode(content)) is not None:
        raise ApiError(400, f"the input text {why}", param="messages" if chat else "prompt")
    return content


async def read_body(request: Request) -> bytes:
    """The request's body, refused with a 413 past MAX_BODY_BYTES (declared or as it streams in)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is {int(declared):,} bytes, more than {MAX_BODY_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is more than {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# what a served answer depends on, other than the request: the program (its files), its params, the models (their
# weights and tokenizers, or each inference server's own fingerprint and version), device, dtype, how answers are
# read and judged; the seed is the request's own
_FINGERPRINTED = ("program_hash", "params", "models", "model_files", "tokenizer_files", "device", "dtype", "answers",
                  "judge", "checkers")


def system_fingerprint(header: dict[str, Any]) -> str:
    """OpenAI's `system_fingerprint` for a served strategy: `ttcl-VERSION-HASH`, the hash over what the answer
    depends on besides the request (_FINGERPRINTED, and each engine's fingerprint and version), so that a client
    that logs it sees when the same request can answer otherwise. It was null (QA pass)."""
    engines = {ref: {k: (e or {}).get(k) for k in ("engine", "version", "system_fingerprint")}
               for ref, e in (header.get("engines") or {}).items()}
    what = {k: header.get(k) for k in _FINGERPRINTED} | {"engines": engines}
    digest = hashlib.blake2b(json.dumps(what, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()
    return f"ttcl-{header.get('ttcl_version') or 'dev'}-{digest}"
