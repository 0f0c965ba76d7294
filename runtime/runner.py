"""One run of a compiled program over a list of items: models, budgets, trace, resume, results.

This is the layer `ttcl run`, `ttcl eval` and `ttcl.run(...)` share. It
loads each model once, builds the accountant from the program's budgets
and the static bound of every node, wires the hooks (accountant, trace,
progress), skips items a resumed trace already finished (restoring their
spend into the pooled budget), and returns typed results plus the
per-node table of bound against actual.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ttcl import __version__
from ttcl.compiler.costmodel import FORMULA, STATIC_UNITS, Cost, Unit
from ttcl.compiler.endpoints import is_endpoint
from ttcl.compiler.pipeline import Compiled
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.accountant import Accountant, AccountantHook, Limits
from ttcl.runtime.dataset import Item
from ttcl.runtime.extract import make_extractor
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.input_bound import declared_bound, over_bound
from ttcl.runtime.judge import MARKER, make_judge
from ttcl.runtime.pool_split import other_item_count
from ttcl.runtime.retry import failed_items, resume_note, retry_records
from ttcl.runtime.run_trace import (
    TraceHook,
    model_fingerprint,
    refuse_existing_trace,
    restore_from_trace,
    tokenizer_fingerprint,
)
from ttcl.runtime.scheduler import ItemResult, Scheduler
from ttcl.runtime.scoring import Scorer, make_scorer
from ttcl.runtime.trace import (
    RunHeader,
    TraceWriter,
    check_resumable,
    has_run,
    read_trace,
    refuse_if_being_written,
    stamp,
)

COST_UNITS: tuple[Unit, ...] = (*STATIC_UNITS, Unit.seconds)


@dataclass
class RunOptions:
    """How to run: the knobs `ttcl run` exposes besides the program and its inputs."""

    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    trace: Path | None = None
    resume: bool = False
    dataset: Path | None = None
    max_batch_items: int | None = None
    overwrite: bool = False  # start `trace` over even when it already holds a run
    # lockstep: each step waits for every item's calls; stream: an item advances as soon as its own
    # calls to a server return; auto: stream when any model is a server (docs/endpoints.md)
    schedule: str = "auto"
    # how an answer is judged right: None (gold equality) or a registered checker's name (runtime/judge.py)
    judge: str | None = None
    retry_failed: bool = False  # with `resume`: run the items the trace holds as failed again (runtime/retry.py)


class NodeRow(BaseModel):
    """One row of the cost table: a node of `ttcl check`'s report with its bound and actual spend."""

    node: str
    op: str
    line: int
    file: str = ""  # the file the node is written in (an imported module's, for a node of an imported strategy)
    bound: dict[str, float]
    actual_max: dict[str, float]  # the most any one item spent (what the bound promises)
    actual_mean: dict[str, float]  # per item, over the items run
    ran: int  # items on which the node ran
    skipped: int
    refused: int
    shrunk: int
    reused: int = 0  # verifier scores reused (not charged again), summed over items


class RunSummary(BaseModel):
    """Everything a run reports."""

    program: str
    header: dict[str, Any]
    items: int
    answered: int
    accuracy: float | None
    correct: int
    graded: int
    stopped: int
    failed: int
    degraded: int = 0  # items on_exhaust changed (a node shrunk or refused); see each result's `degraded`
    judge_failed: int = 0  # items the judge raised on: ungraded (`correct: null`), see `failures["judge"]`
    warnings: list[str] = []  # what the models' own files make doubtful (e.g. no end-of-sequence token)
    rows: list[NodeRow]
    bound_total: dict[str, float]  # per item: the static worst case `ttcl check` proves (not times the items)
    actual_total: dict[str, float]  # summed over items
    actual_mean: dict[str, float]  # per item
    actual_max: dict[str, float]  # per item
    budget_item: dict[str, float]
    budget_pooled: dict[str, float]
    on_exhaust: str
    verdict: str  # `ttcl check`'s verdict on the static worst case
    wall_seconds: float
    batches: int
    results: list[dict[str, Any]]
    distributed: dict[str, Any] | None = None  # a wide run (`--ray`): workers, shards, pool calls, restarts, lost spend
    # Prefill charged to items (each as if it ran alone) that the prefix cache served from another item's
    # work: the run computed this much less than `actual_total` says ({"prompt_tokens": .., "flops": ..}).
    shared_across_items: dict[str, float] = {}
    # one machine: what the pool was charged beyond the items' costs (steps cut short by a kill, at worst case)
    pool_beyond_items: dict[str, float] = {}


def pool_split(module: Any) -> str:
    """How the program's pooled budget is shared: first_come (the default), even or need."""
    return next((b.split for b in module.budgets if b.scope == "pooled" and getattr(b, "split", None)), "first_come")


def content_seeded(items: list[Item], seed: int) -> list[Item]:
    """Items whose random streams follow their content (question, and which repeat of it), not their position.

    An allocating pool promises results independent of the dataset's order; this makes the samples keep
    that promise too. An item that already carries its own seed (a `ttcl serve` request) keeps it.
    """
    seen: dict[str, int] = {}
    out: list[Item] = []
    for it in items:
        k = seen.get(it.question, 0)
        seen[it.question] = k + 1
        if it.seed is None:
            key = hashlib.blake2b(f"{seed}\x00{it.question}\x00{k}".encode(), digest_size=8).digest()
            it = it.model_copy(update={"seed": int.from_bytes(key, "big") & ((1 << 63) - 1)})
        out.append(it)
    return out


def _limits(module: Any, scope: str) -> Limits:
    vals: dict[str, float] = {}
    for b in module.budgets:
        if b.scope == scope:
            for lim in b.limits:
                vals[lim.unit] = float(lim.value.value)
    return Limits(**vals)


def program_hash(compiled: Compiled) -> str:
    """The program's text and its imports', named relative to the program's own folder: the same files hash
    alike however the command spells the path, and a copy elsewhere with its imports beside it does too (QA
    pass: a resume from another folder, or with the absolute path, was refused as "the program differs")."""
    h = hashlib.blake2b(digest_size=16)
    named = {_beside_root(compiled, name): text for name, text in compiled.sources.items()}
    for name in sorted(named):
        h.update(name.encode() + b"\x00" + named[name].encode() + b"\x00")
    return h.hexdigest()


def program_files(compiled: Compiled) -> dict[str, str]:
    """Each file of the program (named as `program_hash` names it, "" for the root) and a short hash of its text:
    a refused resume names the file that changed (QA pass: "the program differs" named none)."""
    return {_beside_root(compiled, name): hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
            for name, text in sorted(compiled.sources.items())}


def _beside_root(compiled: Compiled, path: str) -> str:
    """A program file's name relative to the root program's folder ("" for the root itself); a bundled program
    imported as `ttcl:NAME` is named so, wherever the root and the package are."""
    from ttcl.programs import BUNDLED_DIR, PREFIX

    root = os.path.abspath(compiled.program.root.file)
    if path.startswith(PREFIX):
        return path
    full = os.path.abspath(path)
    if full == root:
        return ""
    if os.path.dirname(full) == str(BUNDLED_DIR) and full.endswith(".ttc"):
        return PREFIX + os.path.basename(full).removesuffix(".ttc")
    return os.path.relpath(full, os.path.dirname(root))


def models_of(compiled: Compiled) -> dict[str, str]:
    """Model name -> ref after overrides, for every model a node runs (verifier models included)."""
    out: dict[str, str] = {}
    for node in compiled.dag:
        a = node.args
        for ref in (a.model, a.verifier.model if a.verifier else None, a.feedback.model if a.feedback else None):
            if ref is not None:
                root = compiled.program.root
                mine = ref.module in (root.key, root.file)  # an import's models are named by its file, as placed
                out[ref.name if mine else f"{_beside_root(compiled, ref.module)}:{ref.name}"] = ref.ref
    return out


def static_bounds(compiled: Compiled) -> dict[str, Cost]:
    return {
        r.node: Cost(calls=r.bound["calls"], prompt_tokens=r.bound["prompt_tokens"], gen_tokens=r.bound["gen_tokens"],
                     flops=r.bound["flops"])
        for r in compiled.report.rows
    }


def sub_budgets(compiled: Compiled) -> dict[str, Limits]:
    """Each inlined call's own `budget per item`, keyed by the call's namespace."""
    out: dict[str, Limits] = {}
    for sub in compiled.report.sub_budgets:
        vals = {lim.unit: lim.limit for lim in sub.limits if lim.scope == "item"}
        if vals:
            out[sub.call] = Limits(**vals)
    return out


_LOADED: dict[tuple[str, str, str], Any] = {}


def load_backend(ref: str, device: str, dtype: str, options: dict[str, float] | None = None,
                 base_dir: str | None = None) -> Any:
    """A model loaded once per process (an eval sweep runs many configurations on the same weights).

    A ref that is a URL connects to that OpenAI-compatible server instead."""
    if is_endpoint(ref):
        ekey = (ref, repr(sorted((options or {}).items())), base_dir or "")
        if ekey not in _LOADED:
            from ttcl.runtime.backends.endpoint import open_endpoint

            _LOADED[ekey] = open_endpoint(ref, options, base_dir)
        return _LOADED[ekey]
    key = (ref, device, dtype)
    if key not in _LOADED:
        from ttcl.runtime.backends.transformers import TransformersBackend

        _LOADED[key] = TransformersBackend(ref, device=device, dtype=dtype)
    return _LOADED[key]


class Runner:
    """Loads what a compiled program needs once, then runs item lists (a dataset, or one input)."""

    def __init__(self, compiled: Compiled, options: RunOptions, *, load_models: bool = True) -> None:
        """`load_models=False`: a runner that only plans and summarises (a sharded run's driver)."""
        self.compiled = compiled
        self.options = options
        module = compiled.module
        self.per_item = _limits(module, "item")
        self.pooled = _limits(module, "pooled")
        self.on_exhaust = compiled.report.on_exhaust or "stop"
        self.split = pool_split(module) if not self.pooled.is_empty() else "first_come"
        self.backends = self._load_backends() if load_models else {}
        self.scorers = self._load_scorers() if load_models else {}
        self.judge = make_judge(options.judge)
        self.extract = self._extractor()  # after the judge: a checker's extractor sets how the judge reads gold

    def _load_backends(self) -> dict[str, Any]:
        refs = {n.args.model.ref: n.args.model for n in self.compiled.dag if n.args.model is not None}
        out = {}
        for ref in sorted(refs):
            mref = refs[ref]
            base = None if mref.base_dir is None else str(mref.base_dir)
            out[ref] = load_backend(ref, self.options.device, self.options.dtype,
                                    {k: v for k, v in mref.options.items() if k != "chat"}, base)
        for n in self.compiled.dag:  # a chat model without a template fails here, before any item runs
            mref = n.args.model
            if mref is not None and mref.options.get("chat"):
                apply = getattr(out[mref.ref], "chat_prompt", None)
                if apply is None:
                    raise TtclRuntimeError(f"{mref.span.file}:{mref.span.line}: model `{mref.name}` is declared with "
                                           "`chat = true`, but its backend cannot apply a chat template")
                try:
                    apply("")
                except TtclRuntimeError as e:
                    raise TtclRuntimeError(f"{mref.span.file}:{mref.span.line}: model `{mref.name}` (chat = true): {e}") from None
        from ttcl.runtime.endpoint_checks import check_capabilities

        check_capabilities(self.compiled.dag, out)
        return out

    def _load_scorers(self) -> dict[str, Scorer]:
        out: dict[str, Scorer] = {}
        for n in self.compiled.dag:
            for ref in (n.args.verifier, n.args.feedback):
                if ref is not None and ref.name not in out:
                    out[ref.name] = make_scorer(ref, self._model_scorer)
        return out

    def _user_checkers(self) -> dict[str, str]:
        """The `--verifier` checkers this run uses (its program's `check("NAME")`s and its judge), NAME -> target."""
        from ttcl.runtime.tasks import cli_checker_specs

        used = {self.judge.name} | {ref.checker for n in self.compiled.dag for ref in (n.args.verifier, n.args.feedback)
                                    if ref is not None and ref.kind == "check"}
        return {name: target for name, target, _ in cli_checker_specs() if name in used}

    def _model_scorer(self, ref: Any) -> Scorer:
        from ttcl.runtime.verifier_adapter import model_scorer

        return model_scorer(ref, self.backends, device=self.options.device, dtype=self.options.dtype)

    def _extractor(self) -> Callable[[str], str | None]:
        from ttcl.runtime.tasks import available_checkers, get_checker

        decl = self.compiled.module.extract
        pattern = decl.pattern if decl else None
        reader = None
        if pattern is not None and pattern in available_checkers():  # `extract "countdown"`: that task's reading
            reader, pattern = get_checker(pattern), None
        for n in self.compiled.dag:
            v = n.args.verifier
            if decl is None and v is not None and v.kind == "check" and v.checker:
                reader = get_checker(v.checker)
                break
        checker_extract = None if reader is None else reader.extract
        reading = getattr(reader, "answer_reading", "")
        self.answers = f"{reader.name} {reading}" if reader is not None and reading else ""
        extract = make_extractor(pattern, checker_extract)
        if pattern is None and checker_extract is not None:
            # answers read by a task's checker (countdown's canonical expressions) meet the gold read alike
            self.judge.read_gold = lambda g: extract(MARKER + g)
        return extract

    def header(self, items: list[Item]) -> RunHeader:
        from ttcl.runtime.dataset import dataset_digest, items_digest

        o = self.options
        # `--input` and the API's `inputs=` are a dataset too: a resume with other inputs returned the first
        # run's answers as theirs (QA pass)
        ds_hash = dataset_digest(o.dataset, items) if o.dataset is not None else items_digest(items)
        budget: dict[str, Any] = {"item": self.per_item.as_dict(), "pooled": self.pooled.as_dict(),
                                  "on_exhaust": self.on_exhaust}
        if self.split != "first_come":
            budget["split"] = self.split
        device = next(iter(self.backends.values())).device.type if self.backends else ""
        dtype = str(next(iter(self.backends.values())).dtype).removeprefix("torch.") if self.backends else ""
        for be in self.backends.values():
            if hasattr(be, "probe"):  # a server: its system_fingerprint comes only in a response
                be.probe()
        engines = {ref: be.info() for ref, be in self.backends.items() if hasattr(be, "info")}
        return RunHeader(
            ttcl_version=__version__, program=str(self.compiled.report.file), program_hash=program_hash(self.compiled),
            program_files=program_files(self.compiled),
            params={**self.compiled.report.params, **self.compiled.imported_params}, models=(models := models_of(self.compiled)),
            model_files={name: fp for name, ref in models.items() if (fp := model_fingerprint(ref))},
            tokenizer_files={name: fp for name, ref in models.items() if (fp := tokenizer_fingerprint(ref))}, seed=o.seed,
            dataset=str(o.dataset) if o.dataset else None,
            input=None if o.dataset else (items[0].question if len(items) == 1 else None),
            dataset_hash=ds_hash, items=len(items), budget=budget, flops_formula=FORMULA, device=device, dtype=dtype,
            judge=self.judge.name, answers=self.answers, checkers=self._user_checkers(),
            **({"engines": engines} if engines else {}),
        )

    def run(self, items: list[Item], *, progress: NodeHook | None = None,
            on_result: Callable[[ItemResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None, on_note: Callable[[str], None] | None = None) -> RunSummary:
        """`on_note` gets the line about failed items a resumed trace holds (kept, or rerun with retry_failed)."""
        o = self.options
        t0 = time.perf_counter()
        for be in self.backends.values():  # a KV cache left by an earlier run must not make this one cheaper
            be.clear_cache()
        acc = self.accountant()
        header = self.header(items)
        done: dict[int, ItemResult] = {}
        replay: dict[int, list[tuple[str, Any, Cost, str | None]]] = {}
        writer: TraceWriter | None = None
        hooks: list[NodeHook] = [AccountantHook(acc)]
        retry: list[int] = []
        if o.retry_failed and not o.resume:
            raise TtclRuntimeError("--retry-failed reruns the failed items of a resumed trace: add --resume")
        if o.trace is not None:
            if not o.resume:
                refuse_existing_trace(o.trace, overwrite=o.overwrite)
            seen = None
            if o.resume and has_run(o.trace):  # an empty file: a run killed as it started, begun afresh
                refuse_if_being_written(o.trace)
                seen = stamp(o.trace)
                old = read_trace(o.trace)
                check_resumable(old, header, o.trace)
                wanted = {it.index for it in items}
                retry = failed_items(old, wanted) if o.retry_failed else []
                replay = restore_from_trace(old, acc, done, wanted, frozenset(retry))
                why = other_item_count(self.split, old.header.items, len(items))
                if why is not None and (done or replay or old.spent):  # refused before the writer opens
                    raise TtclRuntimeError(why)
                note = resume_note(old, wanted, o.retry_failed)
                if note is not None and on_note is not None:
                    on_note(note)
            if self.split == "need" and (done or replay) and any(it.index not in done for it in items):
                # refused before the writer opens: a refused resume leaves the trace as it was
                raise TtclRuntimeError("--resume: `split = need` shares the pool among all items at once, and this "
                                       f"trace already holds {len(done)} finished and {len(replay)} partly run "
                                       "items; rerun with --overwrite")
            writer = TraceWriter(o.trace, header, resume=o.resume, expect=seen)
            if retry:  # before any of their new node records: a later read counts only the kept ones
                writer.write_raw(retry_records(replay, retry))
            trace_hook = TraceHook(writer)
            trace_hook.ledger = acc
            hooks.append(trace_hook)
        if progress is not None:
            hooks.append(progress)
        todo = [it for it in items if it.index not in done]
        if self.split != "first_come":
            from ttcl.runtime.pool_split import PoolShares

            acc.shares = PoolShares(self.pooled, self.split)
            acc.shares.begin(it.index for it in items)
            todo = [it for it in content_seeded(items, o.seed) if it.index not in done]
        sched = self.scheduler(acc, hooks)
        sched.isolate_items = self.split != "first_come"
        try:
            fresh = sched.run(todo, on_result=on_result, replay=replay, should_stop=should_stop)
        finally:
            if writer is not None:
                writer.close()
        for r in fresh:
            done[r.index] = r
        results = [done[it.index] for it in items]
        engines = {ref: be.info() for ref, be in self.backends.items() if hasattr(be, "info")}
        if engines:  # now with the system_fingerprints the servers reported
            header = header.model_copy(update={"engines": engines})
        return self.summary(header, results, acc, time.perf_counter() - t0, len(sched.batches))

    def accountant(self, *, pooled: Limits | None = None, cls: type[Accountant] = Accountant,
                   **extra: Any) -> Accountant:
        """The run's accountant; a shard of a wide run passes its own pooled quota and subclass."""
        return cls(per_item=self.per_item, pooled=self.pooled if pooled is None else pooled,
                   on_exhaust=self.on_exhaust, static_bounds=static_bounds(self.compiled),  # type: ignore[arg-type]
                   sub_budgets=sub_budgets(self.compiled), **extra)

    def scheduler(self, acc: Accountant, hooks: list[NodeHook]) -> Scheduler:
        cls = Scheduler
        mode = self.options.schedule
        if mode not in ("auto", "lockstep", "stream"):
            raise TtclRuntimeError(f"schedule {mode!r}: expected auto, lockstep or stream")
        if self.split == "need" and mode == "stream":
            raise TtclRuntimeError("--schedule stream: `split = need` waits for every item at `allot`; use lockstep")
        if self.split != "need" and (
                mode == "stream" or mode == "auto" and any(hasattr(be, "submit") for be in self.backends.values())):
            from ttcl.runtime.scheduler_stream import StreamScheduler

            cls = StreamScheduler
        name, bound = declared_bound(self.compiled.dag)
        acc.input_check = lambda question: over_bound(question, name, bound, self.backends)
        return cls(
            self.compiled.dag, backends=self.backends, scorers=self.scorers, extract=self.extract,
            seed=self.options.seed, hooks=hooks, accountant=acc, scope=dict(self.compiled.report.params),
            max_batch_items=self.options.max_batch_items, judge=self.judge,
        )

    def summary(self, header: RunHeader, results: list[ItemResult], acc: Accountant, wall: float,
                 batches: int) -> RunSummary:
        report = self.compiled.report
        n = max(1, len(results))
        rows: list[NodeRow] = []
        for r in report.rows:
            spent = [acc.ledger.get((res.index, r.node)) for res in results]
            actuals = [e.actual for e in spent if e is not None]
            rows.append(NodeRow(
                node=r.node, op=r.op, line=r.line, file=r.file, bound=r.bound,
                actual_max=_unitwise(actuals, max), actual_mean=_unitwise(actuals, lambda xs: sum(xs) / n),
                ran=sum(1 for e in spent if e is not None and e.status == "charged"),
                skipped=sum(1 for e in spent if e is not None and e.status == "skipped"),
                refused=sum(1 for e in spent if e is not None and e.status == "refused"),
                shrunk=sum(1 for e in spent if e is not None and e.shrunk),
                reused=sum(e.reused for e in spent if e is not None),
            ))
        costs = [r.cost for r in results]
        graded = [r for r in results if r.correct is not None]
        correct = sum(1 for r in graded if r.correct)
        return RunSummary(
            program=str(report.file), header=header.model_dump(mode="json"), items=len(results),
            answered=sum(1 for r in results if r.answer is not None),
            accuracy=(correct / len(graded)) if graded else None, correct=correct, graded=len(graded),
            stopped=sum(1 for r in results if r.status == "stopped"),
            failed=sum(1 for r in results if r.status == "failed"),
            degraded=sum(1 for r in results if r.degraded),
            judge_failed=sum(1 for r in results if "judge" in r.failures),
            warnings=[w for be in self.backends.values() for w in getattr(be, "warnings", [])],
            rows=rows, bound_total=dict(report.total), actual_total=_unitwise(costs, sum),
            actual_mean=_unitwise(costs, lambda xs: sum(xs) / n), actual_max=_unitwise(costs, max),
            budget_item=self.per_item.as_dict(), budget_pooled=self.pooled.as_dict(), on_exhaust=self.on_exhaust,
            verdict=report.verdict,
            wall_seconds=wall, batches=batches, results=[_result_json(r) for r in results],
            shared_across_items=shared_across_items(self.backends.values()),
            pool_beyond_items=_beyond(acc.pool_spent(), _unitwise(costs, sum), self.pooled.as_dict()),
        )


def _beyond(charged: Cost, items: dict[str, float], pooled: dict[str, float]) -> dict[str, float]:
    """What the pool was charged beyond the items' own costs, per pooled unit (a resumed trace's steps that a
    kill cut short count at their worst case): QA pass, 191 items stopped for an exhausted pool beside a line
    that showed 19% of it spent."""
    return {u: round(charged.get(u) - items[u], 6) for u in pooled if charged.get(u) - items[u] > 1e-6 * max(1.0, items[u])}


def shared_across_items(backends: Iterable[Any]) -> dict[str, float]:
    """What these backends charged items as if each ran alone but computed once, for another item
    (counted since their caches were last cleared); empty when nothing was."""
    bes = list(backends)
    tokens = float(sum(getattr(be, "shared_prompt_tokens", 0) for be in bes))
    flops = float(sum(getattr(be, "shared_flops", 0.0) for be in bes))
    return {"prompt_tokens": tokens, "flops": flops} if tokens or flops else {}


def _unitwise(costs: list[Cost], agg: Callable[[list[float]], float]) -> dict[str, float]:
    if not costs:
        return {u.value: 0.0 for u in COST_UNITS}
    return {u.value: float(agg([c.get(u) for c in costs])) for u in COST_UNITS}


def _result_json(r: ItemResult) -> dict[str, Any]:
    return {
        "item": r.index, "question": r.question, "gold": r.gold, "answer": r.answer, "correct": r.correct,
        "status": r.status, "error": r.error, "failures": r.failures, "cost": r.cost.as_dict(), "fields": r.fields,
        "degraded": r.degraded,
    }


__all__ = ["NodeRow", "RunOptions", "RunSummary", "Runner", "shared_across_items"]
