"""`ttcl serve`: strategies as an OpenAI-compatible endpoint (FastAPI + uvicorn).

Each served program (and each `--preset` of one) is a model id. A request's
input is the last user message (chat) or the prompt (completions); one longer
than the strategy's declared `text[<=N]` is a 400 before anything runs, and so
is an `n` other than 1 (a strategy returns one answer; the program sets its
own sampling, so `temperature` and the like are ignored);
`extra_body={"ttcl": {"set": {...}}}` overrides params and `seed` sets the
run seed. A request is compiled with its overrides and admitted only when
`ttcl check` proves its worst case fits the program's per-item budget (and
what is left of the caller's pooled budget, with `--key-budget`); otherwise
it gets an OpenAI-style 400 (429 for a spent key budget) naming the
overshoot.

Each model id has its own queue and worker thread, which gathers whatever
arrives within a short window and runs each group of requests for the same
compiled program as one batch through the ordinary runner and scheduler,
so concurrent requests share batched model calls as dataset items do.
Model ids whose programs load no model in common run at the same time; a
model (a policy or a verifier, loaded once per process) serves one batch at
a time, so ids that share one take turns, whole batch by whole batch.

`usage` is the ledger: prompt_tokens the prefill actually computed,
completion_tokens every generated token (reasoning_tokens: all but the
answer's), and a `ttcl` object with calls, FLOPs, seconds, the budget and
the static bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ttcl.errors import TtclError
from ttcl.runtime.input_bound import declared_bound, over_bound
from ttcl.serve_openai import (
    ApiError,
    finish_reason,
    outcome_error,
    question_of,
    read_body,
    refuse_unsupported,
    system_fingerprint,
    wants_usage_chunk,
)

KEEPALIVE_S = 1.0
# how often a request that does not stream asks whether its client is still there (QA pass: at 1 s, a hang-up was
# seen after a vLLM-backed batch had finished, so its work was never stopped)
DISCONNECT_POLL_S = 0.1


@dataclass
class Strategy:
    """One served model id: a program and the preset params it runs with."""

    id: str
    program: Path
    sets: list[str] = field(default_factory=list)


MAX_COMPILED = 256  # compiled (model id, ttcl.set) pairs kept; about 70 KB each, and 45 ms to compile one again


@dataclass
class Admitted:
    runner: Any
    compiled: Any
    key: tuple[str, ...]
    input_name: str = "question"
    input_bound: int | None = None  # the entry strategy's first input's `text[<=N]`, in tokens
    locks: tuple[threading.Lock, ...] = ()  # the shared models its runs hold, in one order for every runner


@dataclass
class _Pending:
    admitted: Admitted
    question: str
    seed: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    gone: bool = False  # its client disconnected: once every request of a batch is gone, the batch stops


class KeyBudgets:
    """Optional pooled budgets per API key: a request reserves its static worst case, then is charged its actual."""

    def __init__(self, limits: dict[str, float]) -> None:
        self.limits = limits
        self.spent: dict[str, dict[str, float]] = {}
        self.reserved: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()

    def reserve(self, key: str, bound: dict[str, float]) -> None:
        if not self.limits:
            return
        with self.lock:
            spent, held = self.spent.setdefault(key, {}), self.reserved.setdefault(key, {})
            over, for_good = [], False
            for unit, limit in self.limits.items():
                have = spent.get(unit, 0.0) + held.get(unit, 0.0)
                if have + bound.get(unit, 0.0) > limit:
                    over.append(f"{unit}: worst case {bound.get(unit, 0.0):g} but {max(0.0, limit - have):g} "
                                f"of {limit:g} left")
                    for_good = for_good or spent.get(unit, 0.0) + bound.get(unit, 0.0) > limit
            if over:  # what is spent never comes back: a client's retry could only succeed on held reservations
                raise ApiError(429, "this API key's pooled budget cannot cover the request's worst case: "
                               + "; ".join(over), type_="insufficient_quota", code="key_budget_exhausted",
                               headers={"x-should-retry": "false"} if for_good else None)
            for unit in self.limits:
                held[unit] = held.get(unit, 0.0) + bound.get(unit, 0.0)

    def settle(self, key: str, bound: dict[str, float], actual: dict[str, float]) -> None:
        if not self.limits:
            return
        with self.lock:
            spent, held = self.spent.setdefault(key, {}), self.reserved.setdefault(key, {})
            for unit in self.limits:
                held[unit] = held.get(unit, 0.0) - bound.get(unit, 0.0)
                spent[unit] = spent.get(unit, 0.0) + actual.get(unit, 0.0)


class Server:
    """Compiled strategies (cached per overrides), admission, and a batching worker per model id."""

    def __init__(self, strategies: list[Strategy], *, models: list[str], allow_remote: list[str] | None = None,
                 device: str = "auto", dtype: str = "auto", key_budget: dict[str, float] | None = None,
                 batch_window_s: float = 0.02) -> None:
        self.strategies = {s.id: s for s in strategies}
        self.models = models
        self.allow_remote = allow_remote
        self.device, self.dtype = device, dtype
        self.budgets = KeyBudgets(key_budget or {})
        self.window = batch_window_s
        self.cache: dict[tuple[str, ...], Admitted] = {}
        self.serving = False  # set once every strategy compiled at start-up: errors are then a client's
        self.admitting = threading.Lock()  # one compile and model load at a time: a model is loaded once
        self.model_locks: dict[int, threading.Lock] = {}  # id of a loaded backend -> held while a batch runs on it
        self.queues: dict[str, queue.Queue[_Pending | None]] = {}
        for sid in self.strategies:  # one lane per model id: a long batch of one never queues another's
            self.queues[sid] = queue.Queue()
            threading.Thread(target=self._work, args=(self.queues[sid],), name=f"ttcl-serve:{sid}",
                             daemon=True).start()

    # -- admission ----------------------------------------------------------------------

    def admit(self, model: Any, sets: Any) -> Admitted:
        if model is None:
            raise ApiError(400, f"`model` is required (served: {', '.join(self.strategies)})", param="model")
        if not isinstance(model, str) or model not in self.strategies:
            raise ApiError(404, f"model {model!r} is not served here (served: {', '.join(self.strategies)})",
                           param="model", code="model_not_found")
        if not isinstance(sets, dict) or not all(isinstance(k, str) for k in sets):
            raise ApiError(400, "ttcl.set must be an object of param names to values", param="ttcl.set")
        stripped = [k.strip() for k in sets]
        if twice := sorted({k for k in stripped if stripped.count(k) > 1}):  # `"n "` and `" n"`: one was dropped
            raise ApiError(400, f"ttcl.set names param `{twice[0]}` twice (its keys differ only in spaces); keep one",
                           param="ttcl.set", code="invalid_param")
        strat = self.strategies[model]
        merged = dict(b.split("=", 1) for b in strat.sets)  # the request's own values win over a preset's
        merged.update({k.strip(): _text(v) for k, v in sets.items()})
        overrides = [f"{k}={v}" for k, v in sorted(merged.items())]
        key = (model, *overrides)
        if (hit := self.cache.get(key)) is not None:  # the common case takes no lock: a first compile elsewhere
            return hit  # does not delay it
        with self.admitting:
            if key not in self.cache:
                self.cache[key] = self._compile(strat, model, overrides, key)
                while len(self.cache) > MAX_COMPILED:  # the oldest first; a request holding one keeps its own
                    self.cache.pop(next(iter(self.cache)))  # (QA pass: every distinct ttcl.set was kept for good)
            return self.cache[key]

    def _compile(self, strat: Strategy, model: str, overrides: list[str], key: tuple[str, ...]) -> Admitted:
        from ttcl.commands.compile import compile_from_cli
        from ttcl.runtime.runner import Runner, RunOptions

        try:
            compiled = compile_from_cli(strat.program, overrides, self.models, None, self.allow_remote)
        except TtclError as e:  # in a client's words: its model id, not the server's path; ttcl.set, not --set
            if not self.serving:  # at start-up the user's own --set and path are what went wrong (QA pass)
                raise
            # `PROGRAM:17:1: error` reads as a file of the client's model id: `MODEL, line 17:1: error` (QA pass)
            said = re.sub(re.escape(str(strat.program)) + r":(\d+):(\d+):", lambda m: f"{strat.id}, line {m[1]}:{m[2]}:",
                          str(e))
            said = said.replace(str(strat.program), strat.id).replace("`--set ", "`ttcl.set ")
            code = "invalid_param" if "`ttcl.set " in said else "invalid_program"  # a client's value, not the program
            raise ApiError(400, said, param="ttcl.set", code=code) from None
        if any(b.scope == "pooled" for b in compiled.module.budgets):
            raise ApiError(400, f"{model} declares `budget pooled`, a budget shared over the items of one dataset "
                           "run, and a served request is one item alone: serve a program with a per-item budget "
                           "(--key-budget bounds what each API key spends)", code="invalid_program")
        report = compiled.report
        if report.verdict == "over":
            over = [f"{lim.unit}: worst case {lim.bound:g} > limit {lim.limit:g} (over by {lim.over_by:g})"
                    for lim in report.limits if lim.status == "over"]
            hint = "" if self.serving else (  # at start-up (QA pass: a fitting --preset did not help, unsaid)
                "; the bare model id runs with the --set values (a --preset only adds another id): give --set "
                "values that fit")
            raise ApiError(400, f"{model} with {', '.join(overrides) or 'its defaults'} cannot fit its budget: "
                           + "; ".join(over) + hint, param="ttcl.set", code="over_budget")
        runner = Runner(compiled, RunOptions(device=self.device, dtype=self.dtype))
        shared = {id(m): m for m in runner.backends.values()}  # a judge reads through a policy's backend too
        shared.update({id(m): m for sc in runner.scorers.values() if (m := getattr(sc, "backend", None)) is not None})
        locks = tuple(self.model_locks.setdefault(k, threading.Lock()) for k in sorted(shared))
        return Admitted(runner, compiled, key, *declared_bound(compiled.dag), locks=locks)

    def check_input(self, admitted: Admitted, question: str, param: str) -> None:
        """An input longer than the strategy's declared `text[<=N]` is refused (400) before anything runs, as
        `ttcl run --input` refuses it (exit 2): each model counts the input in its own tokens, as `ttcl check`
        bounded it; an input of more than 64 characters per token of the bound is refused by its length, before a
        tokenizer reads it (QA pass: a 1 MB input took seconds of CPU and stayed in the encode cache, 100 MB of
        memory per refused request). A model that cannot count (an endpoint without /tokenize) leaves the check
        to the run."""
        why = over_bound(question, admitted.input_name, admitted.input_bound, admitted.runner.backends)
        if why is not None:
            raise ApiError(400, f"{why}; shorten it", param=param, code="input_too_long")

    # -- the worker -----------------------------------------------------------------------

    def submit(self, admitted: Admitted, question: str, seed: int) -> _Pending:
        loop = asyncio.get_running_loop()
        pending = _Pending(admitted, question, seed, loop.create_future(), loop)
        self.queues[admitted.key[0]].put(pending)
        return pending

    def close(self) -> None:
        for q in self.queues.values():
            q.put(None)

    def _work(self, lane: queue.Queue[_Pending | None]) -> None:
        while True:
            first = lane.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.window
            while (left := deadline - time.monotonic()) > 0:
                try:
                    nxt = lane.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is None:
                    lane.put(None)
                    break
                batch.append(nxt)
            groups: dict[tuple[str, ...], list[_Pending]] = {}
            for p in batch:
                groups.setdefault(p.admitted.key, []).append(p)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, group: list[_Pending]) -> None:
        from ttcl.runtime.dataset import Item
        from ttcl.runtime.scheduler import RunInterrupted

        group = [p for p in group if not p.gone]  # hung up while it queued
        if not group:
            return
        admitted = group[0].admitted
        items = [Item(index=k, question=p.question, seed=p.seed) for k, p in enumerate(group)]
        try:  # stopped after the running step once no client of the batch is left to answer
            with ExitStack() as held:  # every lock in the same order (by model id): no two lanes deadlock
                for lock in admitted.locks:
                    held.enter_context(lock)
                if all(p.gone for p in group):  # hung up while another lane held a model it needs
                    raise RunInterrupted("every client hung up")

                def gone() -> bool:
                    return all(p.gone for p in group)

                def abandon() -> None:  # inside a step too: one step can be a long batched call (QA pass: 21 s)
                    if gone():
                        raise RunInterrupted("every client hung up, inside a model call")

                local = [be for be in admitted.runner.backends.values() if hasattr(be, "on_decode_step")]
                for be in local:  # this batch holds these models' locks: no other batch decodes on them now
                    be.on_decode_step = abandon
                try:
                    summary = admitted.runner.run(items, should_stop=gone)
                finally:
                    for be in local:
                        be.on_decode_step = None
            outs: list[Any] = [(summary, {**summary.results[k], "batch": len(group)}) for k in range(len(group))]
            failed = [r for r in summary.results if r["status"] == "failed"]
            if failed:  # an inference server down failed every request, and the log said nothing (QA pass)
                sys.stderr.write(f"ttcl serve: {len(failed)} of {len(group)} request(s) of {admitted.key[0]} failed: "
                                 f"{(str(failed[0]['error'] or '').splitlines() or ['no error said'])[0][:300]}\n")
        except RunInterrupted as e:
            where = ", inside a model call" if str(e).endswith("inside a model call") else ""
            sys.stderr.write(f"ttcl serve: stopped a batch of {len(group)} request(s) of {group[0].admitted.key[0]}"
                             f"{where}: every client hung up\n")
            outs = [ApiError(499, "the client closed the request", type_="server_error") for _ in group]
        except Exception as e:  # a failed run fails its requests, never the server
            msg = str(e) if isinstance(e, TtclError) else f"internal error: {type(e).__name__}: {e}"
            outs = [ApiError(500, msg, type_="server_error") for _ in group]
            first = msg.splitlines()[0] if msg else type(e).__name__  # the log said nothing of an outage (QA pass)
            sys.stderr.write(f"ttcl serve: a batch of {len(group)} request(s) of {group[0].admitted.key[0]} failed: "
                             f"{first[:300]}\n")
        for p, out in zip(group, outs, strict=True):
            p.loop.call_soon_threadsafe(_resolve, p.future, out)


def _resolve(fut: asyncio.Future, out: Any) -> None:
    if fut.done():
        return
    if isinstance(out, Exception):
        fut.set_exception(out)
    else:
        fut.set_result(out)


def _text(v: Any) -> str:
    if v is None:  # as the client wrote it: JSON's null
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def usage_of(admitted: Admitted, summary: Any, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    cost = result["cost"]
    prompt, gen = int(cost["prompt_tokens"]), int(cost["gen_tokens"])
    answer = result["answer"] or ""
    backends = list(admitted.runner.backends.values())
    details: dict[str, int] | None = None
    try:  # a vLLM backend without a local twin counts through its `/tokenize` (a call out, hence run off the loop)
        details = {"reasoning_tokens": gen - (min(gen, backends[0].count_tokens(answer)) if answer and backends else 0)}
    except Exception:  # noqa: BLE001 - a cosmetic figure: a failed count leaves it out rather than lose a paid-for
        pass  # answer (QA pass: a /tokenize 503 turned a finished answer into a plain 500 and a traceback)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": gen,
        "total_tokens": prompt + gen,
        **({"completion_tokens_details": details} if details is not None else {}),
        "ttcl": {
            "calls": int(cost["calls"]), "flops": cost["flops"], "seconds": cost["seconds"],
            "wall_seconds": seconds, "status": result["status"], "error": result["error"],
            "failures": result["failures"], "budget": summary.budget_item, "static_bound": summary.bound_total,
            "params": {**admitted.compiled.report.params, **admitted.compiled.imported_params}, "engines": summary.header.get("engines"),
            "batch": result.get("batch", 1),  # requests run in the same scheduler batch
        },
    }


def create_app(server: Server) -> Any:
    app = FastAPI(title="ttcl serve")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        """An unknown route or method in OpenAI's error shape, as every other error (QA pass: FastAPI's `detail`)."""
        why = f"{request.method} {request.url.path}: {str(e.detail).lower()}"
        return JSONResponse(ApiError(e.status_code, why, code="not_found" if e.status_code == 404 else None).body(),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def card(s: Strategy) -> dict[str, Any]:
        return {"id": s.id, "object": "model", "created": 0, "owned_by": "ttcl", "program": s.program.name,
                "params": s.sets}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card(s) for s in server.strategies.values()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:  # the openai client's `models.retrieve`
        if model_id not in server.strategies:
            raise ApiError(404, f"model {model_id!r} is not served here (served: {', '.join(server.strategies)})",
                           param="model", code="model_not_found")
        return card(server.strategies[model_id])

    async def handle(request: Request, chat: bool) -> Any:
        try:
            body = json.loads(await read_body(request))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not JSON") from None
        except ValueError as e:  # an integer past Python's 4,300 digits: a plain 500 and a traceback (QA pass)
            raise ApiError(400, f"the request body holds a number ttcl cannot read: {str(e).split(';')[0]}") from None
        except RecursionError:  # `[[[...]]]` 100,000 deep: a plain 500 before (QA pass)
            raise ApiError(400, "the request body is JSON nested too deeply") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        question = question_of(body, chat)
        n = body.get("n", 1)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n != 1):
            raise ApiError(400, f"n = {json.dumps(n)}: a strategy returns one answer, so n must be 1 (its own "
                           "sampling is set by the program's params: ttcl.set)", param="n")
        ttcl = body.get("ttcl", {})
        if ttcl is None:
            ttcl = {}
        if not isinstance(ttcl, dict):
            raise ApiError(400, "ttcl must be an object", param="ttcl")
        if unknown := sorted(set(ttcl) - {"set"}):  # `"sett"` ran the defaults without a word (QA pass)
            raise ApiError(400, f"ttcl has no field {unknown[0]!r}: its one field is `set` (the program's params)",
                           param="ttcl")
        refuse_unsupported(body)
        usage_chunk = wants_usage_chunk(body)
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbits(31)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "seed must be an integer", param="seed")
        admitted = await asyncio.to_thread(server.admit, body.get("model"), ttcl.get("set", {}))
        await asyncio.to_thread(server.check_input, admitted, question, "messages" if chat else "prompt")
        auth = request.headers.get("authorization", "")
        key = hashlib.sha256(auth.encode()).hexdigest()
        bound = dict(admitted.compiled.report.total)
        server.budgets.reserve(key, bound)
        t0 = time.perf_counter()
        pending = server.submit(admitted, question, seed)
        fut = pending.future
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]

        async def finish() -> tuple[Any, dict[str, Any], dict[str, Any]]:
            try:
                summary, result = await fut
            finally:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    server.budgets.settle(key, bound, fut.result()[1]["cost"])
                else:
                    server.budgets.settle(key, bound, bound)  # unknown outcome: the worst case stays spent
            seconds = time.perf_counter() - t0
            return summary, result, await asyncio.to_thread(usage_of, admitted, summary, result, seconds)

        def hang_up() -> None:
            """The client went away: its work stops after the running step (once no one else in its batch waits),
            and its key is charged the worst case, since what it spent is never read."""
            pending.gone = True
            if fut.cancel():
                server.budgets.settle(key, bound, bound)

        if body.get("stream"):
            return StreamingResponse(_stream(rid, body["model"], chat, fut, finish, hang_up, usage_chunk),
                                     media_type="text/event-stream")
        while not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), DISCONNECT_POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    hang_up()
                    return Response(status_code=499)
            except Exception:  # the outcome is read (and reported) below
                break
        summary, result, usage = await finish()
        if (err := outcome_error(result, chat)) is not None:
            raise err
        answer = result["answer"] or ""
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(result), "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": answer}
        else:
            choice["text"] = answer
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": body["model"], "system_fingerprint": system_fingerprint(summary.header), "choices": [choice],
                "usage": usage}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await handle(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, chat=False)

    return app


async def _stream(rid: str, model: str, chat: bool, fut: asyncio.Future, finish: Any,
                  hang_up: Callable[[], None], usage_chunk: bool) -> AsyncIterator[str]:
    """SSE: keep-alive comments while the strategy runs, then the answer, then a usage chunk (unless the client
    said `stream_options.include_usage: false`), then [DONE]. A client that hangs up cancels this generator, which
    hangs its request up."""
    try:
        while not fut.done():
            yield ": keep-alive\n\n"
            try:
                await asyncio.wait_for(asyncio.shield(fut), KEEPALIVE_S)
            except TimeoutError:
                continue
            except Exception:  # the outcome is read (and reported) below
                break
    except asyncio.CancelledError:
        hang_up()
        raise
    obj = "chat.completion.chunk" if chat else "text_completion"
    try:
        summary, result, usage = await finish()
        if (err := outcome_error(result, chat)) is not None:  # as a whole response says it (QA pass: a stream
            raise err  # answered "" with finish_reason stop)
    except ApiError as e:
        yield f"data: {json.dumps(e.body())}\n\n"
        return
    base = {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "system_fingerprint": system_fingerprint(summary.header)}
    answer = result["answer"] or ""
    if chat:
        first = {"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": None}
        last = {"index": 0, "delta": {}, "finish_reason": finish_reason(result)}
    else:
        first = {"index": 0, "text": answer, "finish_reason": None}
        last = {"index": 0, "text": "", "finish_reason": finish_reason(result)}
    yield f"data: {json.dumps({**base, 'choices': [first]})}\n\n"
    yield f"data: {json.dumps({**base, 'choices': [last]})}\n\n"
    if usage_chunk:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
