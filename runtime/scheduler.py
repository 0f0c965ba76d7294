"""The scheduler: runs a compiled DAG over many items at once, in lockstep batches.

Each step:
  1. every active item runs its ready cheap nodes inline (vote, top,
     compare, guards, phis, ...) until nothing more is ready without a
     model, skipping nodes whose guard does not hold (an untaken arm, the
     iterations after an `until`/`break`): skipped nodes are never charged;
  2. each ready model node becomes a job, which asks the hooks (the
     accountant) for an allowance before it queues its calls;
  3. the calls of every job of every item are grouped by model (or
     verifier) and each group goes to the backend as ONE batched call, so
     64 items x 4 branches of best-of-16 is one `generate` of 256 requests;
  4. results go back to their jobs; finished jobs set their node's value.

A failure (a verifier that raises, a prompt too long for the model) is
isolated to its item: a batch that raises is retried request by request,
the failing item is recorded as failed with its best answer so far, and
every other item carries on. A refused allowance (`on_exhaust = stop`, or
nothing fits under `shrink`) stops that item with its best answer so far.

`allot(need)` (a pooled budget with `split = need`) is the one barrier: an
item that reaches it with nothing else in flight is parked, freeing its
batch slot; when every item is parked there or finished, the accountant
shares the rest of the pool by need and the parked items run on, in item
order (runtime/pool_split.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ttcl.compiler.costmodel import Cost
from ttcl.compiler.dag import Dag, DagNode
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.accountant import Accountant, AccountingError, Allowance, Resize
from ttcl.runtime.backends.base import Backend, ExtendRequest, GenRequest
from ttcl.runtime.dataset import Item
from ttcl.runtime.degraded import describe as describe_degraded
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.jobs import GenCall, Job, JobContext, ScoreCall, in_context, make_job
from ttcl.runtime.judge import Judge, JudgeError
from ttcl.runtime.ops import OpError, run_cheap
from ttcl.runtime.scoring import Scorer
from ttcl.runtime.values import Answer, Candidates, Value, best, fallback_answer, to_json, vote

MODEL_OPS = frozenset({"sample", "extend", "verify", "revise"})


class RunInterrupted(KeyboardInterrupt):
    """The run stopped between two steps at the user's request (Ctrl-C): everything finished is recorded."""


@dataclass
class ItemResult:
    """The outcome of one item."""

    index: int
    question: str
    gold: str | None
    answer: str | None
    correct: bool | None
    status: str = "ok"  # ok | stopped | failed
    error: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    fields: dict[str, Any] = field(default_factory=dict)  # the dataset line's other fields (e.g. steps)
    degraded: list[str] = field(default_factory=list)  # what on_exhaust changed (runtime/degraded.py); [] if nothing


@dataclass
class _ItemRun:
    item: Item
    inputs: dict[str, Value]
    values: dict[str, Value] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)  # done | skipped | failed
    pending: list[str] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    status: str = "ok"
    error: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # node -> why it did not run
    shrunk: dict[str, str] = field(default_factory=dict)  # node -> how the accountant shrank it
    refused: dict[str, str] = field(default_factory=dict)  # node -> why the accountant refused it
    scores: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # verifier score cache (jobs.JobContext)
    need: float | None = None  # set while the item waits at `allot` for the other items

    @property
    def index(self) -> int:
        return self.item.index

    def ran(self, node_id: str) -> bool:
        return self.state.get(node_id) == "done"


def settle_future(call: GenCall, future: Future) -> None:
    """Wait for one submitted request and put its result (or its error) on the call."""
    try:
        call.result = future.result()
    except TtclRuntimeError as e:
        call.error = e


def final_answer(value: Value) -> Answer:
    """A strategy's result as an answer: candidates are voted (by score when scored)."""
    if isinstance(value, Answer):
        return value
    if isinstance(value, Candidates):
        scored = any(c.score is not None for c in value.items)
        return best(value) if scored else vote(value)
    if value is None:
        return Answer(None)
    from ttcl.runtime.ops import as_text

    return Answer(as_text(value))


class Scheduler:
    """Executes one compiled DAG over a list of items, batching model calls across them."""

    def __init__(
        self,
        dag: Dag,
        *,
        backends: dict[str, Backend],
        scorers: dict[str, Scorer],
        extract: Callable[[str], str | None],
        seed: int = 0,
        hooks: list[NodeHook] | None = None,
        accountant: Accountant | None = None,
        scope: Mapping[str, Any] | None = None,
        default_revise: list | None = None,
        max_batch_items: int | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.dag = dag
        self.judge = judge or Judge()  # gold equality unless the run names a checker (runtime/judge.py)
        self.backends = backends
        self.scorers = scorers
        self.extract = extract
        self.seed = seed
        self.hooks = hooks or []
        self.accountant = accountant
        self.scope = dict(scope or {})
        self.default_revise = default_revise or []
        self.max_batch_items = max_batch_items
        self.t0 = time.perf_counter()
        self.batches: list[tuple[str, int]] = []  # (model or verifier, requests) per backend call
        self.steps = 0
        self._allotted: dict[int, float] | None = None  # each item's share, once every item reached `allot`
        # An allocating pool: no KV prefix carried from one backend call to the next, so what an item is
        # charged never depends on which other items ran before it (runtime/pool_split.py).
        self.isolate_items = False
        self._order = [n.id for n in dag.topological_order()]
        self._keep_kv = in_context(dag.nodes.values())
        # Only hooks that look at node inputs/outputs (the trace) pay for turning them into JSON.
        self._want_io = any(h.wants_io if h.wants_io is not None else type(h).after_node is not NodeHook.after_node
                            for h in self.hooks)
        self._input_names = [dag[i].args.name or "" for i in dag.inputs]

    # ------------------------------------------------------------ public

    def run(self, items: list[Item], on_result: Callable[[ItemResult], None] | None = None,
            replay: Mapping[int, list[tuple[str, Value, Cost, str | None]]] | None = None,
            should_stop: Callable[[], bool] | None = None,
            should_drain: Callable[[], bool] | None = None) -> list[ItemResult]:
        """Run every item; results in item order. `on_result` sees each item as it finishes.

        `replay` gives, per item, nodes a stopped run already finished (id, value, cost, how it was shrunk):
        they are restored as done, not run again (`--resume`; the accountant already holds their spend).
        `should_stop` is asked after every step; True ends the run there with RunInterrupted, after
        the hooks saw every node and item that finished, so no finished call is lost.
        `should_drain` is asked before items are taken in; True starts no more of them, finishes the ones
        started, and then raises RunInterrupted (a wide run's first Ctrl-C: it keeps whole items).
        """
        self.replay = dict(replay or {})
        for h in self.hooks:
            h.before_run(items=len(items), nodes=len(self.dag), replayed=sum(len(r) for r in self.replay.values()))
        results: dict[int, ItemResult] = {}
        queue: list[Item | _ItemRun] = list(items)
        active: list[_ItemRun] = []
        parked: list[_ItemRun] = []  # waiting at `allot` (runs in item order once released)
        left = 0  # items a drain did not start
        while queue or active or parked:
            if not queue and not active:  # every item is at `allot` or finished: share the pool out
                self._release(parked)
                queue, parked = list(sorted(parked, key=lambda r: r.index)), []
            room = self.max_batch_items is None or len(active) < self.max_batch_items
            if should_drain is not None and room and any(isinstance(q, Item) for q in queue) and should_drain():
                left += sum(1 for q in queue if isinstance(q, Item))
                queue = [q for q in queue if isinstance(q, _ItemRun)]  # items released from `allot` finish too
            while queue and (self.max_batch_items is None or len(active) < self.max_batch_items):
                nxt = queue.pop(0)
                active.append(nxt if isinstance(nxt, _ItemRun) else self._new_run(nxt))
            for run in active:
                self._advance(run)
            parked += [r for r in active if r.need is not None and not r.jobs and self._allotted is None]
            active = [r for r in active if not (r.need is not None and not r.jobs and self._allotted is None)]
            # every queued call of every job, grouped by model / verifier, one batch per group
            self._execute_jobs([(r, j) for r in active for j in list(r.jobs.values()) if j.calls])
            active = self._retire(active, results, on_result)
            if should_stop is not None and (queue or active) and should_stop():
                raise RunInterrupted(f"{len(results)} items finished, {len(active) + len(queue)} not")
        if left:
            raise RunInterrupted(f"{len(results)} items finished, {left} not started")
        ordered = [results[i.index] for i in items]
        for h in self.hooks:
            h.after_run(results=ordered)
        return ordered

    def _release(self, parked: list[_ItemRun]) -> None:
        """The `allot` barrier: every item has reached it or finished. Share the rest of the pool by need."""
        needs = {r.index: float(r.need or 0.0) for r in parked}
        acc = self.accountant
        if acc is not None and acc.shares is not None and acc.shares.split == "need":
            self._allotted = acc.shares.allot(needs, acc.used)
        else:  # no allocating pool (a bare scheduler): the shares are reported, nothing is capped
            from ttcl.runtime.pool_split import fractions

            self._allotted = fractions(needs)
        for r in parked:
            r.need = None

    def _retire(self, active: list[_ItemRun], results: dict[int, ItemResult],
                on_result: Callable[[ItemResult], None] | None) -> list[_ItemRun]:
        """Record every finished item; return the ones still running."""
        still: list[_ItemRun] = []
        for run in active:
            if self._finished(run):
                res = self._result(run)
                results[run.index] = res
                for h in self.hooks:
                    h.after_item(item=run.index, result=res)
                if on_result is not None:
                    on_result(res)
            else:
                still.append(run)
        return still

    # ------------------------------------------------------------ per item

    def _new_run(self, item: Item) -> _ItemRun:
        inputs: dict[str, Value] = {name: item.question if k == 0 else item.extra[name]
                                    for k, name in enumerate(self._input_names) if k == 0 or name in item.extra}
        run = _ItemRun(item=item, inputs=inputs, pending=list(self._order))
        if self.accountant is not None:  # an input over its `text[<=N]` stops the item (runtime/input_bound.py)
            self.accountant.admit(item.index, item.question)
        for node_id, value, cost, shrunk in self.replay.pop(item.index, []):
            if node_id in run.state or node_id not in self.dag.nodes:
                continue
            if shrunk:
                run.shrunk[node_id] = shrunk
            run.state[node_id] = "done"
            run.values[node_id] = value
            run.completed.append(node_id)
            run.cost = run.cost + cost
            self._recall_scores(run, self.dag.nodes[node_id], value)
        if run.state:
            run.pending = [n for n in run.pending if n not in run.state]
        return run

    def _finished(self, run: _ItemRun) -> bool:
        return not run.pending and not run.jobs

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _advance(self, run: _ItemRun) -> None:
        """Resolve every node that is ready without a model; start jobs for ready model nodes."""
        progress = True
        while progress and run.pending:
            progress = False
            left: list[str] = []
            for node_id in run.pending:
                if run.status != "ok":
                    self._skip(run, self.dag[node_id], f"item {run.status}")
                    progress = True
                    continue
                node = self.dag[node_id]
                if not self._ready(run, node):
                    left.append(node_id)
                    continue
                reason = self._guard_blocks(run, node)
                if reason is None and node.op == "allot" and self._allotted is None:
                    run.need = self._need(run, node)  # wait here until every item arrives
                    left.append(node_id)
                    continue
                if reason is not None:
                    self._skip(run, node, reason)
                elif node.op in MODEL_OPS:
                    self._start_job(run, node)
                else:
                    self._run_cheap(run, node)
                progress = True
            run.pending = left

    def _ready(self, run: _ItemRun, node: DagNode) -> bool:
        deps = [p.node for p in node.inputs]
        if node.guard is not None:
            deps.append(node.guard.node)
        return all(d in run.state for d in deps)

    def _guard_blocks(self, run: _ItemRun, node: DagNode) -> str | None:
        g = node.guard
        if g is None:
            return None
        if run.state.get(g.node) != "done":  # the whole region is off for the reason its guard is
            return run.skipped.get(g.node, "guard did not run")
        if bool(run.values.get(g.node)) == g.arm:
            return None
        if g.node.endswith("/stop"):
            return "loop ended (until/break)"
        return "untaken arm"

    def _skip(self, run: _ItemRun, node: DagNode, reason: str) -> None:
        run.state[node.id] = "skipped"
        run.skipped[node.id] = reason
        for h in self.hooks:
            h.skip_node(item=run.index, node=node, reason=reason)

    def _inputs_json(self, run: _ItemRun, node: DagNode) -> dict[str, Any]:
        if not self._want_io:
            return {}
        return {p.role + ":" + p.node: to_json(run.values.get(p.node)) for p in node.inputs}

    def _budget_left(self, run: _ItemRun) -> Callable[[str], float]:
        def left(unit: str) -> float:
            if self.accountant is None:
                return float("inf")
            return self.accountant.remaining(run.index).get(unit, float("inf"))

        return left

    def _budget_pool(self, unit: str) -> float:
        if self.accountant is None:
            return float("inf")
        return self.accountant.pool_left().get(unit, float("inf"))

    @staticmethod
    def _need(run: _ItemRun, node: DagNode) -> float:
        ids = node.input_nodes("need")
        v = run.values.get(ids[0]) if ids else None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0

    def _run_cheap(self, run: _ItemRun, node: DagNode) -> None:
        started = self._now()
        allow = self._gate_raw(run.index, node, Cost(), None, None, None)
        error: str | None = None
        value: Value = None
        if not allow.granted:
            self._stop(run, node, allow, started)
            return
        try:
            if node.op == "allot":
                value = (self._allotted or {}).get(run.index, 0.0)
            else:
                value = run_cheap(node, run.values, run.ran, inputs=run.inputs, budget_left=self._budget_left(run),
                                  scope=self.scope, budget_pool=self._budget_pool)
        except (OpError, TtclRuntimeError) as e:
            error = str(e)
        self._after_phase(run, node, allow, Cost(), error)
        self._settle(run, node, value, Cost(), error, None, started)

    @staticmethod
    def _recall_scores(run: _ItemRun, node: DagNode, value: Value) -> None:
        """A replayed `verify`'s scores go back into the item's score cache, so that a later `verify` of the
        same candidates reuses them as in the run that was cut short (QA pass: a resume charged those again,
        74 calls over 200 items of revision.ttc, and under a tight budget stopped items the run had finished)."""
        ref = node.args.verifier if node.op == "verify" else None
        if ref is None or not isinstance(value, Candidates):
            return
        for c in value.items:
            if c.score is not None:
                run.scores.setdefault((ref.name, c.prompt, c.text), (c.score, c.step_scores))

    def _start_job(self, run: _ItemRun, node: DagNode) -> None:
        ctx = JobContext(
            backends=self.backends,
            scorers=self.scorers,
            extract=self.extract,
            seed=self.seed if run.item.seed is None else run.item.seed,
            item=run.index if run.item.seed is None else 0,
            question=run.item.question,
            values=run.values,
            default_revise=self.default_revise,
            scores=run.scores,
            keep_kv=self._keep_kv,
            owner=run.index,
        )
        job = make_job(node, ctx)
        run.started[node.id] = self._now()
        try:
            job.start(self._gate(run))
        except (OpError, TtclRuntimeError) as e:
            job.error = str(e)
            job.calls = []
        run.jobs[node.id] = job
        if job.done:
            self._finish_job(run, job)

    def _gate(self, run: _ItemRun) -> Callable[[Job, Cost, int | None, int | None, Resize | None], Allowance]:
        def gate(job: Job, worst: Cost, n: int | None, m: int | None, resize: Resize | None) -> Allowance:
            return self._gate_raw(run.index, job.node, worst, n, m, resize)

        return gate

    def _gate_raw(
        self, item: int, node: DagNode, worst: Cost, n: int | None, m: int | None, resize: Resize | None
    ) -> Allowance:
        allow: Allowance | None = None
        for h in self.hooks:
            got = h.before_node(item=item, node_id=node.id, op=node.op, worst_case=worst, n=n, max_tokens=m, resize=resize)
            if got is not None and allow is None:
                allow = got
        if allow is None:
            return Allowance(item, node.id, True, worst, n, m)
        if allow.granted and allow.ticket:
            for h in self.hooks:
                h.granted(item=item, node_id=node.id, allowance=allow)
        return allow

    def _after_phase(self, run: _ItemRun, node: DagNode, allow: Allowance | None, actual: Cost, error: str | None) -> None:
        if allow is None or not allow.granted:
            return
        for h in self.hooks:
            try:
                h.after_phase(item=run.index, node_id=node.id, allowance=allow, actual=actual, error=error)
            except AccountingError as e:
                run.failures[node.id] = str(e)
                run.status, run.error = "failed", str(e)

    def _finish_job(self, run: _ItemRun, job: Job) -> None:
        del run.jobs[job.node.id]
        if job.refused is not None and job.error is None:
            if job.phases > 1:  # an earlier round ran: keep its value before stopping
                self._settle(run, job.node, job.value, job.actual, None, job.refused, run.started[job.node.id])
                run.status = "stopped"
                run.failures[job.node.id] = job.refused.reason
                run.refused[job.node.id] = job.refused.reason
                return
            self._stop(run, job.node, job.refused, run.started[job.node.id])
            return
        self._settle(run, job.node, job.value, job.actual, job.error, job.allowance, run.started[job.node.id],
                     reused=job.reused)

    def _stop(self, run: _ItemRun, node: DagNode, allow: Allowance, started: float) -> None:
        run.state[node.id] = "failed"
        run.status = "stopped"
        run.failures[node.id] = allow.reason
        run.refused[node.id] = allow.reason
        for h in self.hooks:
            h.after_node(item=run.index, node=node, status="refused", actual=Cost(), inputs=self._inputs_json(run, node),
                         outputs=None, error=None, reason=allow.reason, started=started, seconds=0.0)

    def _settle(
        self, run: _ItemRun, node: DagNode, value: Value, actual: Cost, error: str | None,
        allow: Allowance | None, started: float, *, reused: int = 0,
    ) -> None:
        run.cost = run.cost + actual
        if error is not None:
            run.state[node.id] = "failed"
            run.failures[node.id] = error
            if run.status == "ok":
                run.status, run.error = "failed", f"{node.id}: {error}"
            status = "failed"
        else:
            run.state[node.id] = "done"
            run.values[node.id] = value
            run.completed.append(node.id)
            status = "shrunk" if allow is not None and allow.shrunk else "ok"
            if status == "shrunk":
                run.shrunk[node.id] = allow.reason  # type: ignore[union-attr]
        for h in self.hooks:
            h.after_node(
                item=run.index, node=node, status=status, actual=actual, inputs=self._inputs_json(run, node),
                outputs=to_json(value) if error is None and self._want_io else None, error=error,
                reason=allow.reason if allow is not None and allow.shrunk else None,
                started=started, seconds=actual.seconds, reused=reused,
            )

    def _result(self, run: _ItemRun) -> ItemResult:
        out = self.dag.output
        if run.state.get(out) == "done":
            ans = final_answer(run.values.get(out))
        else:
            ans = fallback_answer([run.values[i] for i in run.completed])
        failures = dict(run.failures)
        if ans.value is None and run.status == "ok":
            failures.setdefault(out, "no answer could be extracted from the output")
        gold = self.judge.gold_of(run.item.gold)
        try:
            correct = self.judge(run.item.question, gold, ans.value)
        except JudgeError as e:  # a user's checker raised: this item is not graded, the rest carry on
            correct = None
            failures["judge"] = str(e)
        degraded = describe_degraded(self.dag, shrunk=run.shrunk, refused=run.refused, skipped=run.skipped,
                                     output_done=run.state.get(out) == "done", completed=run.completed,
                                     values=run.values) if run.shrunk or run.refused else []
        return ItemResult(
            index=run.index, question=run.item.question, gold=gold, answer=ans.value, correct=correct,
            status=run.status, error=run.error, failures=failures, cost=run.cost, fields=dict(run.item.extra),
            degraded=degraded,
        )

    # ------------------------------------------------------------ batched execution

    def _before_calls(self) -> None:
        """Every allowance of this step is granted and no call has gone out yet (a wide run syncs its ledger)."""
        self.steps += 1
        for h in self.hooks:
            h.before_calls(step=self.steps)

    def _execute_jobs(self, pending: list[tuple[_ItemRun, Job]]) -> None:
        self._before_calls()
        gen: dict[tuple[str, str], list[GenCall]] = defaultdict(list)
        score: dict[str, list[ScoreCall]] = defaultdict(list)
        for _, job in pending:
            for call in job.calls:
                if isinstance(call, GenCall):
                    kind = "extend" if isinstance(call.request, ExtendRequest) else "generate"
                    gen[(call.model, kind)].append(call)
                else:
                    score[call.verifier].append(call)
        for (model, kind), calls in gen.items():
            self._run_gen(model, kind, calls)
        for name, calls in score.items():
            self._run_score(name, calls)
        for h in self.hooks:
            h.before_completions(step=self.steps)
        try:
            for run, job in pending:
                self._complete(run, job)
        finally:
            for h in self.hooks:
                h.after_completions(step=self.steps)

    def _complete(self, run: _ItemRun, job: Job) -> None:
        """A job's phase has its results: charge it, queue its next phase or finish its node."""
        allow = job.allowance
        spent = job.collect()
        if allow is not None:
            self._after_phase(run, job.node, allow, spent, job.error)
        job.next_phase(self._gate(run))
        if job.done:
            self._finish_job(run, job)

    def _run_gen(self, model: str, kind: str, calls: list[GenCall]) -> None:
        be = self.backends[model]
        if self.isolate_items:
            for b in self.backends.values():
                b.clear_cache()
        self.batches.append((model, len(calls)))
        if hasattr(be, "submit"):  # a server: every request on its own, its failure its own
            futures = [be.submit(c.request) for c in calls]
            for c, f in zip(calls, futures, strict=True):
                settle_future(c, f)
            return
        try:
            results = self._call_gen(be, kind, [c.request for c in calls])
        except (TtclRuntimeError, ValueError, RuntimeError) as e:
            if len(calls) == 1:
                calls[0].error = e
                return
            for c in calls:  # isolate the request that fails; every other one still gets its result
                self._run_gen(model, kind, [c])
            return
        for c, r in zip(calls, results, strict=True):
            c.result = r

    @staticmethod
    def _call_gen(be: Backend, kind: str, reqs: list[GenRequest | ExtendRequest]) -> list:
        if kind == "extend":
            return be.extend(reqs)  # type: ignore[arg-type]
        return be.generate(reqs)  # type: ignore[arg-type]

    def _run_score(self, name: str, calls: list[ScoreCall]) -> None:
        if self.isolate_items:  # a judge reads through the policy's prefix cache
            for b in self.backends.values():
                b.clear_cache()
        self.batches.append((name, len(calls)))
        try:
            out = self.scorers[name].score([(c.question, c.cands) for c in calls])
        except Exception as e:  # a scorer that fails as a whole: every item in it records the failure
            for c in calls:
                c.error = e
            return
        for c, r in zip(calls, out, strict=True):
            if isinstance(r, Exception):
                c.error = r
            else:
                c.result = r
