"""Model refs that name an OpenAI-compatible server instead of a local directory.

A ref that starts with `http://` or `https://` is an endpoint:

    http://127.0.0.1:8000/v1
    http://127.0.0.1:8000/v1?model=ID&engine=vllm&local=ttcl:arith-m&concurrency=32

Query keys (all optional; they are ttcl's, never sent to the server):
  model        the served model id (default: the server's only model)
  engine       vllm | sglang | transformers-serve | generic (default: detected at start)
  local        the same model on this machine (`ttcl:NAME` or a directory): its
               config gives FLOPs and its tokenizer counts prompt tokens
               (default: the served model id, when it names one)
  concurrency  requests in flight at once to this endpoint (default 16)
  timeout      seconds to wait for one request's answer (default 600)

Program text is untrusted: `untrusted_remote` says whether an endpoint
written in a program points off this machine. API keys never appear in a
ref (a URL with user info is refused); they come from the environment.
No network and no torch here: the compiler only reads the text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ttcl.errors import TtclSemanticError

ENGINES = ("vllm", "sglang", "transformers-serve", "generic")
QUERY_KEYS = ("model", "engine", "local", "concurrency", "timeout")
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 86400.0
API_KEY_VARS = ("TTCL_API_KEY", "OPENAI_API_KEY")


class EndpointError(TtclSemanticError):
    """A malformed endpoint ref."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint ref."""

    ref: str
    base_url: str  # what the OpenAI client is given: scheme://host[:port]/path
    host: str
    model: str | None = None
    engine: str | None = None
    local: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT_S  # seconds for one request's answer

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def root_url(self) -> str:
        """scheme://host[:port], where /health and /version live."""
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    @property
    def shares_prefill(self) -> bool:
        """Whether n samples are known to share one prefill: never on a server. Even vLLM's native `n` fans
        out into n requests that each prefill the prompt (its own `vllm:prompt_tokens_total` counts them
        all) unless its prefix cache serves them, which cannot be promised in advance."""
        return False


def is_endpoint(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_endpoint(ref: str) -> Endpoint:
    """Parse an endpoint ref; every problem is an EndpointError naming it."""
    try:
        parts = urlsplit(ref)
        port = parts.port
    except ValueError as e:
        raise EndpointError(f"endpoint `{ref}`: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"endpoint `{ref}`: expected http://HOST[:PORT]/PATH")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(
            f"endpoint `{_redact(ref)}` carries credentials in the URL; put the API key in the environment "
            f"({' or '.join(API_KEY_VARS)}) instead")
    if parts.fragment:
        raise EndpointError(f"endpoint `{ref}`: a `#` fragment means nothing here; name the model with `?model=ID`")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in QUERY_KEYS:
            raise EndpointError(f"endpoint `{ref}`: unknown option `{key}` (expected one of {', '.join(QUERY_KEYS)})")
        if key in query:
            raise EndpointError(f"endpoint `{ref}`: option `{key}` is given twice")
        if not value:
            raise EndpointError(f"endpoint `{ref}`: option `{key}` is empty")
        query[key] = value
    engine = query.get("engine")
    if engine is not None and engine not in ENGINES:
        raise EndpointError(f"endpoint `{ref}`: unknown engine `{engine}` (expected one of {', '.join(ENGINES)})")
    concurrency = DEFAULT_CONCURRENCY
    if "concurrency" in query:
        try:
            concurrency = int(query["concurrency"])
        except ValueError:
            concurrency = 0
        if concurrency < 1:
            raise EndpointError(f"endpoint `{ref}`: concurrency must be a positive whole number")
    timeout = DEFAULT_TIMEOUT_S
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= MAX_TIMEOUT_S:  # false for nan
            raise EndpointError(f"endpoint `{ref}`: timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return Endpoint(ref=ref, base_url=base, host=host, model=query.get("model"), engine=engine,
                    local=query.get("local"), concurrency=concurrency, timeout=timeout)


def untrusted_remote(ref: str, allowed_hosts: frozenset[str] | set[str]) -> str | None:
    """The host of an endpoint written in a program that points off this machine and is not allowed; else None."""
    if not is_endpoint(ref):
        return None
    try:
        ep = parse_endpoint(ref)
    except EndpointError:
        return None  # reported as malformed where its spec is looked up
    if ep.loopback or ep.host in allowed_hosts:
        return None
    return ep.host


def _redact(ref: str) -> str:
    parts = urlsplit(ref)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, "***@" + netloc, parts.path, parts.query, parts.fragment))
