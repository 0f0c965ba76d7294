"""A backend on an OpenAI-compatible server (vLLM, SGLang, `transformers serve`, any other).

Selected by a model ref that is a URL (see `ttcl.compiler.endpoints` for the
syntax). It implements the backend protocol (`generate`, `extend`,
`count_tokens`, `spec`) and adds `submit`, which sends one request and
returns a future, so the scheduler can keep many requests in flight and
let each item advance as soon as its own calls return.

Requests go through the official async `openai` client on one background
event loop, at most `concurrency` at once per endpoint. The client's own
retries are off; ttcl's are:
  * a request that never reached the server (connection refused, connect
    timeout) or that it refused to start (429) is retried with exponential
    backoff, charged nothing; once every try of one request found the server
    unreachable, later requests to it try once, with no backoff, until one
    gets through (a dead server fails a run's remaining items in moments,
    not ATTEMPTS backoffs each; a server that is back is used at once);
  * a request whose outcome is unknown (read timeout, dropped connection,
    5xx, a malformed answer) is NOT retried: the server may have computed
    it, so it is charged at its worst case and fails its item (a retry
    would need a second allowance that the node's static bound has no room
    for);
  * a request the server rejects (other 4xx) fails its item, charged nothing.
Every failure is an `EndpointCallError` carrying what it charged.

Accounting: prompt tokens and generated tokens are the server's `usage`,
cross-checked against the local tokenizer (a mismatch means the local twin
is not the served model, and is an error); `cached_tokens` is subtracted
only where the engine's figure is trustworthy (vLLM, one prompt, n = 1).
FLOPs use the shared cost model with the model's declared or local config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ttcl.compiler.costmodel import ModelSpec, forward_flops
from ttcl.compiler.endpoints import Endpoint, parse_endpoint
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import (
    ExtendRequest,
    GenRequest,
    GenResult,
    Sample,
    SamplingParams,
    Usage,
    resolve_ref,
)
from ttcl.runtime.backends.decode import trim_at_stop
from ttcl.runtime.backends.endpoint_http import (  # noqa: F401 - pin_served_model: re-exported
    api_key,
    control_timeout,
    engine_facts,
    pin_served_model,
    refuse_a_shorter_context,
    refuse_wrong_twin,
    scrub,
    served_entry,
    served_model,
)
from ttcl.runtime.backends.endpoint_http import get_json as _get_json
from ttcl.runtime.backends.endpoint_http import http_json as _http_json
from ttcl.runtime.backends.profiles import Profile, detect_engine, profile

ATTEMPTS = 4  # tries of a request that never reached the server
BACKOFF_S = 0.25  # first wait; doubles per try
PROBE_PROMPT = "1"  # the start-up probe's prompt: one token in any tokenizer worth serving


class EndpointCallError(TtclRuntimeError):
    """One request failed; `usage` is what it was charged (its worst case when the outcome is unknown)."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class _Loop:
    """One background event loop for every endpoint in the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ttcl-endpoints", daemon=True).start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def submit(cls, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, cls.get())


_SEMAPHORES: dict[str, asyncio.Semaphore] = {}
_DOWN: dict[str, float] = {}  # base_url -> wall time at which every try of one request found it unreachable


def _unreachable(ep: Endpoint, attempt: int, cause: BaseException | None) -> str | None:
    """After a request to `ep` never reached it: None to back off and retry, else the error's wording (and the
    endpoint is marked down, so later requests try once). Runs on the loop's thread only."""
    name = type(cause).__name__
    down = _DOWN.get(ep.base_url)
    if down is not None:
        return (f"endpoint {ep.base_url} unreachable ({name}); not retried, since every try of an earlier request "
                f"found it unreachable at {time.strftime('%H:%M:%S', time.localtime(down))}; nothing was charged")
    if attempt + 1 < ATTEMPTS:
        return None
    _DOWN[ep.base_url] = time.time()
    return f"endpoint {ep.base_url} unreachable after {ATTEMPTS} tries ({name}); nothing was charged"


def _semaphore(ep: Endpoint) -> asyncio.Semaphore:
    """Per endpoint (scheme://host:port/path), shared by every model on it; created on the loop."""
    sem = _SEMAPHORES.get(ep.base_url)
    if sem is None:
        sem = _SEMAPHORES[ep.base_url] = asyncio.Semaphore(ep.concurrency)
    return sem


def sample_seed(seed: int, j: int) -> int:
    """Sample j's own seed when samples are separate requests (31 bits: every engine accepts it)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{j}".encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF


class EndpointBackend:
    """The backend protocol on an OpenAI-compatible server. See the module docstring."""

    def __init__(self, ref: str, spec: ModelSpec, *, flops_known: bool = True, local: str | None = None) -> None:
        self.ref = ref
        self.ep = parse_endpoint(ref)
        self.spec = spec
        self.flops_known = flops_known
        self.device = _Remote()
        self.dtype = "remote"
        self.model_id, self.engine, self.version = self._connect()
        self.profile: Profile = profile(self.engine)
        self.shares_prefill = False  # see Endpoint.shares_prefill
        self.fingerprints: set[str] = set()
        self.start_fingerprint: str | None = None
        self.local = local
        self.local_cfg: dict[str, Any] = {}
        self.tokenizer: Any = None
        self._tok_lock = threading.Lock()
        if local is not None:
            refuse_wrong_twin(self.ep, local, self.models, self.model_id)  # a program's own URL, or the API's
            self._load_local(local)
            refuse_a_shorter_context(self.ep, self.models, self.model_id, self.spec.n_ctx)
        elif self.profile.engine != "vllm":
            raise TtclRuntimeError(
                f"endpoint {self.ep.base_url} ({self.engine}): cannot count prompt tokens without the model's "
                f"tokenizer; add `local=DIR` (the served model's directory or a ttcl:NAME) to the URL"
            )
        self._client: Any = None
        self.probe_usage: dict[str, int] | None = None
        self.probe_sent = False

    # -- connection ---------------------------------------------------------------------

    def _connect(self) -> tuple[str, str, str | None]:
        models, model_id = served_model(self.ep)
        self.models = models
        version_status, version = _get_json(self.ep.root_url + "/version", control_timeout(self.ep))
        version_json = version if version_status == 200 and isinstance(version, dict) else None
        detected = detect_engine(models, version_json)
        engine = self.ep.engine or detected
        if self.ep.engine not in (None, "generic") and detected != "generic" and detected != self.ep.engine:
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: declared engine={self.ep.engine} "
                                   f"but the server is {detected}")
        ver, self.seeded = engine_facts(self.ep.root_url, engine, version_json, control_timeout(self.ep))
        return model_id, engine, ver

    def probe(self) -> None:
        """One greedy 1-token completion at the start of a run: the server's `system_fingerprint` is only in a
        response, and the trace header (written before any item's request) must record it. It also proves the
        server can complete before any item is sent. Its usage is in the header (`probe`), charged to no item.
        Once per backend: a `ttcl serve` (or a sweep) runs many times on one, and probed every request, a call
        no usage counted, and once the server went down blamed "the start-up probe" (QA pass); a later failure is
        an item's, retried as its own requests are."""
        self.probe_sent = False  # this run's: a later run on this backend reuses the first run's probe
        if self.probe_usage is not None:
            return
        import openai

        async def one() -> Any:
            async with _semaphore(self.ep):
                for attempt in range(ATTEMPTS):  # a 429 is retried, as an item's request is (QA pass: it failed at once)
                    try:
                        return await self.client().completions.create(
                            model=self.model_id, prompt=PROBE_PROMPT, n=1, max_tokens=1, temperature=0.0, seed=0,
                            extra_body=self.profile.extra_body(SamplingParams(0.0, 1.0, 1, ()), self.local_cfg))
                    except openai.RateLimitError:
                        if attempt + 1 == ATTEMPTS:
                            raise
                        await asyncio.sleep(BACKOFF_S * 2 ** attempt)

        try:
            resp = _Loop.submit(one()).result(timeout=self.ep.timeout)
        except openai.APIStatusError as e:
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: the start-up probe (a 1-token completion) failed "
                                   f"with {e.status_code}: {scrub(_detail(e))}") from None
        except (openai.APITimeoutError, concurrent.futures.TimeoutError):  # said as what it is (QA pass: "failed:
            # TimeoutError: " and nothing more)
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: the start-up probe (a 1-token completion) got no "
                                   f"answer within the ref's timeout={self.ep.timeout:g} s; raise `timeout=` or "
                                   "check the server") from None
        except openai.APIError as e:
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: the start-up probe (a 1-token completion) "
                                   f"failed: {scrub(type(e).__name__ + ': ' + str(e))}") from None
        except json.JSONDecodeError as e:  # a 200 whose body is not JSON (QA pass: exit 70, "internal error")
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: the start-up probe (a 1-token completion) got an "
                                   f"answer that is not JSON ({scrub(str(e))[:120]}); is this an OpenAI-compatible "
                                   "server, or a proxy in front of one?") from None
        u = getattr(resp, "usage", None)
        if u is None or not isinstance(u.prompt_tokens, int) or not isinstance(u.completion_tokens, int):
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: the start-up probe's completion has no usage; "
                                   "ttcl charges tokens from the server's usage, so it cannot use this server")
        self.probe_usage = {"prompt_tokens": u.prompt_tokens, "gen_tokens": u.completion_tokens}
        self.probe_sent = True
        fp = getattr(resp, "system_fingerprint", None)
        self.start_fingerprint = str(fp) if fp else None
        if fp:
            self.fingerprints.add(str(fp))

    def _load_local(self, local: str) -> None:
        from ttcl.runtime.backends.hf_load import load_tokenizer

        path = Path(resolve_ref(local))
        failed = f"endpoint {self.ep.base_url}: cannot load the local twin {local!r}"
        self.tokenizer = load_tokenizer(path, failed)  # one without a tokenizer would count every prompt as 0 tokens
        try:
            self.local_cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TtclRuntimeError(f"{failed}: {e}") from e

    def info(self) -> dict[str, Any]:
        """What the trace header records about this endpoint."""
        return {"url": self.ep.base_url, "model": self.model_id, "engine": self.engine, "version": self.version,
                "system_fingerprint": self.start_fingerprint if self.probe_usage is not None
                else (sorted(self.fingerprints) or [None])[0], "local": self.local,
                "flops_known": self.flops_known, "concurrency": self.ep.concurrency, "probe": self.probe_usage,
                # whether this run sent the probe (the engine suite compares the ledger with the server's counters)
                "probe_sent": self.probe_sent, "seeded": self.seeded,  # False: --seed does not fix its samples
                **({"fingerprints_seen": sorted(self.fingerprints)} if self.fingerprints - {self.start_fingerprint}
                   else {})}

    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.ep.base_url, api_key=api_key(), max_retries=0,
                                       timeout=self.ep.timeout)
        return self._client

    # -- tokens -------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self._encode(text))
        return self._remote_count(text)

    def _remote_count(self, text: str) -> int:
        body, wait = {"model": self.model_id, "prompt": text}, min(30.0, max(1.0, self.ep.timeout))
        status, got = _http_json(self.ep.root_url + "/tokenize", body, wait)
        if status != 200 or not isinstance(got, dict) or not isinstance(got.get("count"), int):
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: /tokenize answered {status} without a count")
        return got["count"]

    def _encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            return []
        with self._tok_lock:  # the scheduler's thread and the request loop share one tokenizer
            return list(self.tokenizer(text, verbose=False)["input_ids"])  # counted; no length warning

    def clear_cache(self) -> None:
        """Nothing to clear here: a server's prefix cache is its own, and `cached_tokens` reports what it saved."""

    # -- the protocol -------------------------------------------------------------------

    def submit(self, request: GenRequest | ExtendRequest) -> concurrent.futures.Future:
        ids: list[int] | None = None
        if isinstance(request, ExtendRequest):
            prompt = request.prompt + request.partial
            if self.profile.token_ids and self.tokenizer is not None:  # the ids the ledger counts, as sent
                ids = self._encode(prompt)
        else:
            prompt = request.prompt
        return _Loop.submit(self._generate(prompt, request.n, request.params, request.seed,
                                           request.max_prompt_tokens, ids))

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return self._all([self.submit(r) for r in requests])

    def extend(self, requests: list[ExtendRequest]) -> list[GenResult]:
        return self._all([self.submit(r) for r in requests])

    # -- judges: next-token log-probabilities -----------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids by the local twin's tokenizer (a judge picks its yes/no tokens with it)."""
        if self.tokenizer is None:
            raise TtclRuntimeError(f"endpoint {self.ep.base_url}: a judge needs the served model's tokenizer; "
                                   "add `local=DIR` (the served model's directory or a ttcl:NAME) to the URL")
        return self._encode(text)

    def require_logprobs(self) -> None:
        """A judge on this server: refused at start unless the engine returns chosen tokens' log-probabilities."""
        if not self.profile.logprobs:
            raise TtclRuntimeError(
                f"endpoint {self.ep.base_url} ({self.engine}): a judge reads next-token log-probabilities, which "
                "this engine does not return for chosen tokens (only vLLM's `logprob_token_ids` is supported); "
                "serve the judge on vLLM or use a local model")
        self.encode("")  # the tokenizer is there

    def next_token_logprobs(self, prompts: list[str], token_ids: list[int]) -> tuple[list[list[float]], Usage]:
        """Log-probabilities of `token_ids` as the next token after each prompt: one 1-token greedy request
        per prompt with vLLM's `logprob_token_ids` (raw log-softmax of the prefill's last logits, as the
        local backend computes). Charged its prefill (prompt tokens less trustworthy `cached_tokens`); the
        one token the server samples is read off the same logits, no decode step runs, so no gen tokens."""
        self.require_logprobs()
        if not prompts:
            return [], Usage()
        futures = [_Loop.submit(self._logprobs_one(p, token_ids)) for p in prompts]
        concurrent.futures.wait(futures)
        out: list[list[float]] = []
        usage = Usage()
        first: BaseException | None = None
        for f in futures:
            e = f.exception()
            if e is not None:
                first = first or e
                usage = usage + (e.usage if isinstance(e, EndpointCallError) else Usage())
                continue
            lp, u = f.result()
            out.append(lp)
            usage = usage + u
        if first is not None:
            raise EndpointCallError(scrub(str(first)), usage)
        return out, usage

    async def _logprobs_one(self, prompt: str, token_ids: list[int]) -> tuple[list[float], Usage]:
        import openai

        L = self.count_tokens(prompt)
        worst = Usage(calls=1, prompt_tokens=L, flops=forward_flops(self.spec, 0, L))
        where = f"endpoint {self.ep.base_url}"
        if self.spec.n_ctx is not None and L >= self.spec.n_ctx:
            raise EndpointCallError(f"judge prompt has {L} tokens; the model has a context of {self.spec.n_ctx}")
        async with _semaphore(self.ep):
            t0 = time.perf_counter()
            for attempt in range(ATTEMPTS):
                try:
                    resp = await self.client().completions.create(
                        model=self.model_id, prompt=prompt, n=1, max_tokens=1, temperature=0.0, logprobs=1,
                        extra_body={"logprob_token_ids": list(token_ids), "return_tokens_as_token_ids": True})
                    break
                except openai.APIConnectionError as e:
                    if type(e.__cause__).__name__ in ("ConnectError", "ConnectTimeout"):  # never reached the server
                        why = _unreachable(self.ep, attempt, e.__cause__)
                        if why is None:
                            await asyncio.sleep(BACKOFF_S * 2 ** attempt)
                            continue
                        raise EndpointCallError(f"judge request: {why}") from None
                    raise EndpointCallError(f"{where}: judge request failed ({type(e).__name__}); charged at its "
                                            "worst case", worst) from None
                except openai.RateLimitError:
                    if attempt + 1 < ATTEMPTS:
                        await asyncio.sleep(BACKOFF_S * 2 ** attempt)
                        continue
                    raise EndpointCallError(f"{where} rate-limited (429) {ATTEMPTS} times; nothing was charged") from None
                except openai.APIStatusError as e:
                    charged = worst if e.status_code >= 500 else Usage()
                    raise EndpointCallError(f"{where}: judge request failed with {e.status_code}: "
                                            f"{scrub(_detail(e))}", charged) from None
        _DOWN.pop(self.ep.base_url, None)
        seconds = time.perf_counter() - t0
        try:
            top = resp.choices[0].logprobs.top_logprobs[0]
            got = {int(str(k).removeprefix("token_id:")): float(v) for k, v in top.items()}
            lps = [got[t] for t in token_ids]
            if resp.usage.prompt_tokens != L:
                raise ValueError(f"the server counted {resp.usage.prompt_tokens} prompt tokens, the local "
                                 f"tokenizer {L}")
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
            raise EndpointCallError(f"{where} sent a malformed judge answer ({type(e).__name__}: {e}); charged at "
                                    "its worst case", worst) from None
        cached = 0
        details = getattr(resp.usage, "prompt_tokens_details", None)
        if self.profile.trust_cached and details is not None:
            cached = min(L, int(getattr(details, "cached_tokens", 0) or 0))
        return lps, Usage(calls=1, prompt_tokens=L - cached, flops=forward_flops(self.spec, cached, L),
                          seconds=seconds)

    @staticmethod
    def _all(futures: list[concurrent.futures.Future]) -> list[GenResult]:
        concurrent.futures.wait(futures)
        return [f.result() for f in futures]

    # -- one request ------------------------------------------------------------------

    async def _generate(self, prompt: str, n: int, params: SamplingParams, seed: int,
                        max_prompt_tokens: int | None, ids: list[int] | None = None) -> GenResult:
        L = len(ids) if ids is not None else self.count_tokens(prompt)
        if L == 0:
            raise EndpointCallError("empty prompt")
        if max_prompt_tokens is not None and L > max_prompt_tokens:
            raise EndpointCallError(f"prompt has {L} tokens, more than the declared {max_prompt_tokens}")
        m = params.max_tokens
        if self.spec.n_ctx is not None:
            if L >= self.spec.n_ctx:
                raise EndpointCallError(f"prompt has {L} tokens; the model has a context of {self.spec.n_ctx}, "
                                        "leaving no room to generate")
            m = min(m, self.spec.n_ctx - L)
        if params.stop and not self.profile.keeps_stop:
            raise EndpointCallError(f"endpoint {self.ep.base_url} ({self.engine}) cannot keep stop strings")
        if self.profile.native_n:
            parts = [(n, seed & 0x7FFFFFFF)]
        else:
            parts = [(1, sample_seed(seed, j)) for j in range(n)]
        t0 = time.perf_counter()
        got = await asyncio.gather(*(self._request(ids if ids is not None else prompt, L, k, m, params, s)
                                     for k, s in parts),
                                   return_exceptions=True)
        samples: list[Sample] = []
        usage = Usage()
        errors: list[BaseException] = []
        for g in got:
            if isinstance(g, BaseException):
                errors.append(g)
                usage = usage + (g.usage if isinstance(g, EndpointCallError) else self._worst(L, 1, m))
            else:
                samples.extend(g.samples)
                usage = usage + g.usage
        # the parts ran at once: the request took the wall time they spanned, not the sum of their own times
        usage = dataclasses.replace(usage, seconds=time.perf_counter() - t0)
        if errors:
            first = errors[0]
            msg = str(first) if isinstance(first, TtclRuntimeError) else f"{type(first).__name__}: {first}"
            raise EndpointCallError(scrub(msg), usage)
        return GenResult(samples, usage)

    def _worst(self, L: int, k: int, m: int) -> Usage:
        return Usage(calls=k, prompt_tokens=k * L, gen_tokens=k * m,
                     flops=k * (forward_flops(self.spec, 0, L) + forward_flops(self.spec, L, L + m)))

    async def _request(self, prompt: str | list[int], L: int, k: int, m: int, params: SamplingParams, seed: int) -> GenResult:
        import openai

        worst = self._worst(L, k, m)
        where = f"endpoint {self.ep.base_url}"
        async with _semaphore(self.ep):
            for attempt in range(ATTEMPTS):
                t0 = time.perf_counter()
                try:
                    resp = await self.client().completions.create(
                        model=self.model_id, prompt=prompt, n=k, max_tokens=m, temperature=params.temperature,
                        top_p=params.top_p, stop=list(params.stop) or None, seed=seed,
                        extra_body=self.profile.extra_body(SamplingParams(params.temperature, params.top_p, m,
                                                                          params.stop), self.local_cfg),
                    )
                except openai.APIConnectionError as e:  # APITimeoutError included
                    if type(e.__cause__).__name__ in ("ConnectError", "ConnectTimeout"):  # never reached the server
                        why = _unreachable(self.ep, attempt, e.__cause__)
                        if why is None:
                            await asyncio.sleep(BACKOFF_S * 2 ** attempt)
                            continue
                        raise EndpointCallError(why) from None
                    kind = "timed out" if isinstance(e, openai.APITimeoutError) else "lost the connection"
                    raise EndpointCallError(f"{where} {kind} mid-request; outcome unknown, charged at its "
                                            "worst case", worst) from None
                except openai.RateLimitError:
                    if attempt + 1 < ATTEMPTS:
                        await asyncio.sleep(BACKOFF_S * 2 ** attempt)
                        continue
                    raise EndpointCallError(f"{where} rate-limited (429) {ATTEMPTS} times; nothing was charged") from None
                except (json.JSONDecodeError, openai.APIResponseValidationError) as e:  # a 200 that is no completion
                    # (QA pass: a proxy's non-JSON 200 was charged half its worst case, under a bare JSONDecodeError)
                    raise EndpointCallError(f"{where} sent a malformed completion (not a JSON completion: "
                                            f"{scrub(str(e))[:120]}); outcome unknown, charged at its worst case",
                                            worst) from None
                except openai.APIStatusError as e:
                    detail = scrub(_detail(e))
                    if e.status_code >= 500:
                        raise EndpointCallError(f"{where} failed with {e.status_code} ({detail}); outcome unknown, "
                                                "charged at its worst case", worst) from None
                    raise EndpointCallError(f"{where} rejected the request with {e.status_code}: {detail}") from None
                _DOWN.pop(self.ep.base_url, None)  # it answered: back to retrying with backoff
                return self._parse(resp, L, k, m, params, worst, time.perf_counter() - t0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, resp: Any, L: int, k: int, m: int, params: SamplingParams, worst: Usage,
               seconds: float) -> GenResult:
        where = f"endpoint {self.ep.base_url}"

        def bad(why: str) -> EndpointCallError:
            return EndpointCallError(f"{where} sent a malformed completion ({why}); charged at its worst case", worst)

        choices = sorted(getattr(resp, "choices", None) or [], key=lambda c: getattr(c, "index", 0) or 0)
        u = getattr(resp, "usage", None)
        if len(choices) != k:
            raise bad(f"{len(choices)} choices for n = {k}")
        if u is None or not isinstance(u.prompt_tokens, int) or not isinstance(u.completion_tokens, int):
            raise bad("no usage")
        if getattr(resp, "system_fingerprint", None):
            self.fingerprints.add(str(resp.system_fingerprint))
        if u.prompt_tokens != L:
            raise EndpointCallError(
                f"{where} counted {u.prompt_tokens} prompt tokens where the local tokenizer counts {L}: "
                f"the local twin ({self.local}) is not the served model ({self.model_id}); charged at its worst case",
                worst)
        if u.completion_tokens > k * m:
            raise bad(f"{u.completion_tokens} tokens generated, more than n x max_tokens = {k * m}")
        eos = self.local_cfg.get("eos_token_id")
        samples: list[Sample] = []
        lengths: list[int] = []
        by_text = 0  # what the texts hold by the local tokenizer, where the server also sent token ids
        for c in choices:
            text = c.text if isinstance(c.text, str) else None
            if text is None:
                raise bad("a choice without text")
            reason = "length" if c.finish_reason == "length" else "eos"
            cut = trim_at_stop(text, params.stop) if params.stop else None
            if cut is not None:  # a server's "stop" is an EOS or a stop string: the kept string tells which
                text, reason = cut, "stop"
            ids = getattr(c, "token_ids", None) or (c.model_extra or {}).get("token_ids")
            if not isinstance(ids, list):
                ids = self._encode(text) + ([eos] if reason == "eos" and isinstance(eos, int) else [])
            else:  # ids and text could disagree (a gateway rewrote the text): the text is what the answer reads
                by_text += len(self._encode(text))
            samples.append(Sample(text=text, token_ids=[int(i) for i in ids], finish_reason=reason))
            lengths.append(len(ids))
        # the server's count is checked against the text it sent, read by the local tokenizer (a re-encoded text
        # may differ from the generated tokens by a few): never charged less than the text holds, up to the bound
        held = max(sum(lengths), by_text)  # QA pass: a text 5x past the bound beside short ids was taken as read
        if held > k * m + max(2, k * m // 10):
            raise bad(f"its text holds {held} tokens by the local tokenizer, more than n x max_tokens = {k * m}")
        gen = max(u.completion_tokens, min(sum(lengths), k * m))
        if k == 1:
            lengths = [gen]
        elif sum(lengths) != gen:  # no per-sample counts from the server: the last takes the difference
            lengths[-1] = max(0, min(m, lengths[-1] + gen - sum(lengths)))
        cached = 0
        details = getattr(u, "prompt_tokens_details", None)
        if self.profile.trust_cached and k == 1 and details is not None:
            cached = min(L, int(getattr(details, "cached_tokens", 0) or 0))
        # each of the k samples prefilled the prompt (vLLM fans `n` out into k requests); usage says L once
        usage = Usage(
            calls=k, prompt_tokens=k * L - cached, gen_tokens=gen,
            flops=forward_flops(self.spec, cached, L) + (k - 1) * forward_flops(self.spec, 0, L)
            + sum(forward_flops(self.spec, L, L + g) for g in lengths),
            seconds=seconds,
        )
        return GenResult(samples, usage)


def open_endpoint(ref: str, options: dict[str, float] | None = None, base_dir: str | None = None) -> EndpointBackend:
    """Connect to an endpoint ref: its cost spec from declared options or its local twin, as `ttcl check` has it."""
    from ttcl.compiler.models import ModelSpecError, UnknownSizeError, local_of, model_spec

    try:
        local = local_of(ref, base_dir)
        try:
            spec, known = model_spec(ref, options, base_dir=Path(base_dir) if base_dir else None), True
        except UnknownSizeError:
            spec, known = ModelSpec(non_embedding_params=0), False
    except ModelSpecError as e:
        raise TtclRuntimeError(str(e)) from e
    return EndpointBackend(ref, spec, flops_known=known, local=local)


class _Remote:
    """Stands where a local backend has its torch device."""

    type = "remote"


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if msg:
            return str(msg)[:300]
    return str(getattr(e, "message", e))[:300]
