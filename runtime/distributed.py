"""A run that outgrows one machine: items sharded over Ray worker actors, one pooled budget, nothing lost.

Ray wraps what exists; it re-implements none of it:

  * `ShardWorker` (an actor per worker) loads the models once and runs
    `runtime.shard.run_shard`: today's Runner, Scheduler and Accountant on
    its shard, so cross-item batching happens inside each worker;
  * `PoolService` (one actor, pinned to the driver's node, no CPU) wraps
    `runtime.pool.PoolLedger`: the pooled budget, fed one batched call per
    scheduler step per worker. It also collects finished items and writes
    the ONE merged trace, so an item is in the trace exactly when the
    ledger holds its charges;
  * `RayRunner` (the driver) shards the items, hands shards to workers,
    and when a worker dies (killed, out of memory, a pool call timed out)
    settles its reservations in full, records the lost spend in the trace,
    and runs the shard's unfinished items again on a fresh worker.

Sharding: item k of the list goes to shard k mod S (S = `shards`,
default the number of workers). Each shard's pooled quota is fixed up
front, in proportion to its items (see runtime/pool.py), so the answers
depend on S and the seed, never on timing or on which worker ran what.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ttcl.compiler.costmodel import Cost
from ttcl.compiler.pipeline import Compiled
from ttcl.errors import TtclError, TtclRuntimeError
from ttcl.runtime.accountant import Limits
from ttcl.runtime.dataset import Item
from ttcl.runtime.pool import Key, PoolLedger, left_of, split_quota
from ttcl.runtime.pool_loss import accountant_died, charge_attempts_in_flight, pool_alive
from ttcl.runtime.pool_split import even_share, other_item_count
from ttcl.runtime.ray_cluster import (
    _POOL,
    _WORKERS,
    DistributedError,
    ShardFailedError,
    _ray,
    _uninterrupted,
    connect,
    shutdown,
)
from ttcl.runtime.retry import failed_items
from ttcl.runtime.run_trace import ledger_from_records, refuse_existing_trace, result_from_record
from ttcl.runtime.runner import Runner, RunOptions, RunSummary, content_seeded
from ttcl.runtime.shard_failure import Isolation, Task, condemned_record
from ttcl.runtime.tasks import cli_checker_specs
from ttcl.runtime.trace import (
    ItemRecord,
    LostRecord,
    NodeRecord,
    RunHeader,
    Trace,
    TraceWriter,
    check_resumable,
    has_run,
    read_trace,
    refuse_if_being_written,
    stamp,
)

POOL_TIMEOUT_S = 60.0  # a pool call this slow counts as lost: the worker stops, its reservations settle in full


# ---------------------------------------------------------------- the actors' classes (wrapped by ray.remote)


def _get(ref: Any) -> Any:
    """`ray.get`, with ttcl's own error raised as itself: a trace that cannot be written or a model that cannot
    load reads as the same one line as on one machine, not as Ray's remote traceback around it."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(getattr(e, "cause", None), TtclError):
            raise e.cause from None
        raise


class PoolService:
    """The accountant actor: the pooled ledger, the finished items, and the merged trace."""

    def __init__(self, limits: Limits, quotas: dict[int, Limits], header: dict[str, Any] | None,
                 trace: str | None, resume: bool) -> None:
        self.writer: TraceWriter | None = None
        self.start(limits, quotas, header, trace, resume)

    def pid(self) -> int:
        return os.getpid()

    def start(self, limits: Limits, quotas: dict[int, Limits], header: dict[str, Any] | None,
              trace: str | None, resume: bool, expect: tuple[int, int] | None = None) -> None:
        """A new run on this actor (one actor serves every run of a driver process, as the workers do). `expect`:
        the trace's stamp when the driver read it to resume (runtime/trace.py, TraceWriter)."""
        self.close()
        self.ledger = PoolLedger(limits, quotas)
        self.items: dict[int, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
        self.writer = (TraceWriter(trace, RunHeader.model_validate(header), resume=resume, expect=expect)
                       if trace else None)
        self.seconds = 0.0  # time inside step(): the accountant's own cost
        self.lost = Cost()  # what attempts lost with their workers spent (charged, or reserved in full)
        self.nodes = 0  # node steps the workers finished (an attempt lost with its worker is redone: counted again)
        self.draining = False

    def drain(self) -> None:
        """The driver's first Ctrl-C: from each worker's next step on, its shard starts no more items."""
        self.draining = True

    def is_draining(self) -> bool:
        return self.draining

    def step(self, worker: str, ops: list[tuple[str, Key, int, dict[str, float]]],
             finished: list[tuple[list[dict[str, Any]], dict[str, Any]]],
             nodes: int = 0) -> tuple[list[bool], bool]:
        """The grants of one scheduler step's reservations, and whether the run is draining."""
        t = time.perf_counter()
        self.nodes += nodes
        granted = self.ledger.step(worker, ops)
        records: list[dict[str, Any]] = []
        for nodes, item in finished:
            if item["item"] in self.items:  # a retried call: the item is already in
                continue
            self.items[item["item"]] = (nodes, item)
            records.extend([*nodes, item])
        if records and self.writer is not None:
            self.writer.write_raw(records)
        self.seconds += time.perf_counter() - t
        return granted, self.draining

    def fail_items(self, records: list[dict[str, Any]]) -> None:
        """Items that failed their worker alone (runtime/shard_failure.py): finished, as failed, costing nothing."""
        records = [r for r in records if r["item"] not in self.items]
        for r in records:
            self.items[r["item"]] = ([], r)
        if records and self.writer is not None:
            self.writer.write_raw(records)

    def settle(self, worker: str, shard: int) -> dict[int, dict[str, float]]:
        lost = self.ledger.settle_worker(worker, set(self.items))
        for c in lost.values():
            self.lost = self.lost + c
        if self.writer is not None and lost:
            self.writer.write_raw([LostRecord(item=i, worker=worker, shard=shard, cost=c.as_dict()).model_dump()
                                   for i, c in sorted(lost.items())])
        return {i: c.as_dict() for i, c in lost.items()}

    def restore(self, spends: list[tuple[int | None, dict[str, float]]]) -> None:
        for shard, cost in spends:
            self.ledger.restore(shard, Cost(**cost))

    def shard_left(self, shard: int) -> Limits:
        return self.ledger.shard_left(shard)

    def done(self) -> list[int]:
        return list(self.items)

    def count(self) -> int:
        return len(self.items)

    def progress(self) -> tuple[int, int]:
        """(finished items, finished node steps) of this run."""
        return len(self.items), self.nodes

    def results(self) -> dict[int, tuple[list[dict[str, Any]], dict[str, Any]]]:
        return self.items

    def stats(self) -> dict[str, Any]:
        return {**self.ledger.stats(), "pool_seconds": self.seconds, "lost_spend": self.lost.as_dict()}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class ShardWorker:
    """A worker actor: loads a program's models once and runs shards of it."""

    def __init__(self) -> None:
        self.runners: dict[tuple[str, str], Runner] = {}

    def pid(self) -> int:
        return os.getpid()

    def load(self, compiled: Compiled, options: RunOptions,
             checkers: list[tuple[str, str, str]] | None = None) -> dict[str, str]:
        """Build (or reuse) the runner; `checkers` are the driver's `--verifier` checkers
        (`tasks.cli_checker_specs()`), registered here too, since this is another process."""
        from ttcl.runtime.runner import models_of, program_hash
        from ttcl.runtime.tasks import register_cli_checker

        for name, target, where in checkers or []:
            register_cli_checker(name, target, where)
        # everything the runner is built from: the program, its models after --model/--compare/--greedy
        # overrides (QA pass: an eval's --compare series reused the first series' runner, so its row was the
        # first model's run under the other's name), and the compiled report (params, budgets, bounds)
        key = (program_hash(compiled) + repr(sorted(models_of(compiled).items()))
               + compiled.report.model_dump_json(),
               f"{options.seed}/{options.device}/{options.dtype}/{options.max_batch_items}/{options.judge}"
               f"/{checkers}")
        if key not in self.runners:
            self.runners.clear()
            self.runners[key] = Runner(compiled, options)
        self.key = key
        be = next(iter(self.runners[key].backends.values()), None)
        return {"device": be.device.type if be is not None else "cpu",
                "dtype": str(be.dtype).removeprefix("torch.") if be is not None else ""}

    def run(self, items: list[Item], pool: Any, worker: str, shard: int, attempt: int,
            quota: Limits, per_item: Limits | None = None) -> dict[str, Any]:
        import ray

        from ttcl.runtime.shard import run_shard

        draining = [False, 0.0]  # as of the last pool call, and when that was

        def client(w: str, ops: list[Any], finished: list[Any], nodes: int) -> list[bool]:
            ref = pool.step.remote(w, ops, finished, nodes)
            try:
                granted, draining[0] = ray.get(ref, timeout=POOL_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError as e:
                # The outcome is unknown: stop here; the driver settles this worker's reservations in full.
                raise TtclRuntimeError(f"pool call timed out after {POOL_TIMEOUT_S:.0f}s") from e
            draining[1] = time.monotonic()
            return granted

        def should_drain() -> bool:
            """Asked before items start: a step's answer may be older than a Ctrl-C (QA pass: each worker started
            one more batch after it), so ask the accountant again unless it answered within 0.1 s."""
            if not draining[0] and time.monotonic() - draining[1] > 0.1:
                draining[0], draining[1] = ray.get(pool.is_draining.remote(), timeout=POOL_TIMEOUT_S), time.monotonic()
            return bool(draining[0])

        return run_shard(self.runners[self.key], items, client=client, worker=worker, shard=shard,
                         attempt=attempt, quota=quota, per_item=per_item, should_drain=should_drain)




def _gpus_per_worker() -> float:
    """One GPU per worker when the cluster has GPUs (a worker's models then sit on its own device)."""
    ray = _ray()
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _worker_actor() -> Any:
    ray = _ray()
    return ray.remote(num_cpus=1, num_gpus=_gpus_per_worker(), max_restarts=0)(ShardWorker).remote()


def workers(n: int) -> list[Any]:
    """`n` live worker actors (started once per process, replaced when one dies)."""
    while len(_WORKERS) < n:
        _WORKERS.append(_worker_actor())
    return _WORKERS[:n]


def worker_pids(n: int) -> list[int]:
    ray = _ray()
    return ray.get([w.pid.remote() for w in workers(n)])


# ---------------------------------------------------------------- the driver


def shard_of(position: int, shards: int) -> int:
    return position % shards


class RayRunner:
    """`Runner.run` over a Ray cluster: same inputs, same RunSummary, one merged trace."""

    def __init__(self, compiled: Compiled, options: RunOptions, *, workers: int = 2, shards: int | None = None) -> None:
        if workers < 1:
            raise DistributedError(f"--workers {workers}: expected a positive number of workers")
        if shards is not None and shards < 1:
            raise DistributedError(f"--shards {shards}: expected a positive number of shards")
        self.compiled = compiled
        self.options = options
        self.n_workers = workers
        self.shards = shards or workers
        self.shards_given = shards is not None
        self.planner = Runner(compiled, options, load_models=False)
        self.restarts = 0
        self.on_note: Callable[[str], None] | None = None
        self.stats: dict[str, Any] = {}

    def check_trace(self, items: list[Item], header: RunHeader | None = None) -> Trace | None:
        """Refuse a --trace this run cannot write or resume, and return the trace a --resume continues (None: a
        fresh run). Needs no cluster: the CLI calls it before one starts (QA pass: a resume with another seed,
        dataset or shard plan, or an existing trace, started a cluster and was refused 5 s later)."""
        o = self.options
        if o.trace is None:
            return None
        if not o.resume:
            refuse_existing_trace(o.trace, overwrite=o.overwrite)
            return None
        if not has_run(o.trace):
            return None
        refuse_if_being_written(o.trace)  # a plain run still going: refused before a cluster starts (QA pass)
        self.seen = stamp(o.trace)
        old = read_trace(o.trace)
        check_resumable(old, header or self.planner.header(items), o.trace)
        planned = getattr(old.header, "shards", None)
        if planned and self.shards_given and int(planned) != self.shards:  # it was dropped without a word (QA)
            raise DistributedError(f"--resume continues this trace's plan of {planned} shards: drop --shards "
                                   f"{self.shards}, or give --shards {planned}")
        why = other_item_count(self.planner.split, old.header.items, len(items))
        if why is not None and (old.items or old.lost or old.spent):
            raise DistributedError(why)
        if self.planner.split == "need" and (old.items or old.lost) and any(it.index not in old.items for it in items):
            # attempts lost to a kill or a Ctrl-C spent what a resume could not deal out again
            raise DistributedError("--resume: `split = need` shares each shard's quota among its items at once, and "
                                   f"{o.trace} already holds {need_work_held(len(old.items), len(old.lost))}; "
                                   "rerun with --overwrite")
        return old

    def run(self, items: list[Item], *, progress: Callable[[int], None] | None = None,
            on_workers: Callable[[list[int]], None] | None = None,
            on_steps: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_note: Callable[[str], None] | None = None) -> RunSummary:
        """`progress(items finished)` and `on_steps(node steps finished, of)` are called about twice a second
        (an item in flight counts its node steps, so a shard's items that finish together show progress).
        `should_stop` (a Ctrl-C) is asked as often: once True, the workers finish the items they started and
        start no more, and the run then raises KeyboardInterrupt (unless that finished every item); their
        work is in the trace, so nothing is lost or charged twice. An interrupt raised in here instead stops at
        once, and the attempts in flight are written as lost spend. `on_note` hears of a worker that failed and
        the items it reruns (QA pass: Ray's own paragraph was the only word of it until the run ended)."""
        self.on_note = on_note
        ray = _ray()
        if not ray.is_initialized():
            raise DistributedError("no Ray cluster: call ttcl.runtime.distributed.connect() first")
        o = self.options
        worker_opts = RunOptions(seed=o.seed, device=o.device, dtype=o.dtype, max_batch_items=o.max_batch_items,
                                 judge=o.judge)
        checkers = cli_checker_specs()
        pool_limits = self.planner.pooled
        header = self.planner.header(items)
        done_before: dict[int, ItemRecord] = {}
        nodes_before: dict[int, list[NodeRecord]] = {}
        spends: list[tuple[int | None, dict[str, float]]] = []
        shards = self.shards
        unattributed = Cost()
        old = self.check_trace(items, header)
        failed = failed_items(old, {it.index for it in items}) if old is not None else []
        if failed and on_note is not None:  # one machine says so too (runtime/retry.py); --retry-failed is its own
            on_note(f"{len(failed)} items failed in the earlier run and are kept as failed; `--resume --retry-failed` "
                    "without --ray runs them again")
        if old is not None:
            shards = int(getattr(old.header, "shards", None) or shards)  # the shard plan is part of the run
            done_before, nodes_before = dict(old.items), dict(old.nodes)
            spends += [(lost.shard, lost.cost) for lost in old.lost]
            if old.spent is not None:  # a single-machine trace: its unfinished attempts spent too
                prior = Cost(**{u: v for u, v in old.spent.items() if u != "tokens"}) + Cost(
                    **{u: v for u, v in (old.cut_short or {}).items() if u != "tokens"})
                for rec in old.items.values():
                    prior = prior + Cost(**{u: -v for u, v in rec.cost.items() if u != "tokens"})
                unattributed = Cost(**{u: max(0.0, prior.get(u)) for u in
                                       ("calls", "prompt_tokens", "gen_tokens", "flops", "seconds")})
        position = {it.index: k for k, it in enumerate(items)}
        spends += [(shard_of(position[i], shards) if i in position else None, rec.cost)
                   for i, rec in done_before.items()]
        # a worker more than the shards with items to run would load the models and wait (QA passes: more workers
        # than shards; a 1-item run on 2 workers)
        busy = max(1, len({shard_of(k, shards) for k, it in enumerate(items) if it.index not in done_before}))
        if self.n_workers > busy:
            if self.on_note is not None:
                some = f"{busy} with items to run" if busy < shards else ""
                self.on_note(f"ray: {shards} shard{'' if shards == 1 else 's'}{', ' + some if some else ''}, so {busy} of "
                             f"the {self.n_workers} workers {'is' if busy == 1 else 'are'} used (a shard runs on one "
                             "worker at a time)")
            self.n_workers = busy
        header = header.model_copy(update={"shards": shards, "workers": self.n_workers})
        ws = workers(self.n_workers)
        infos = []
        for k in range(len(ws)):  # a cached worker may have died since the last run: replace it
            try:
                infos.append(_get(_WORKERS[k].load.remote(self.compiled, worker_opts, checkers)))
            except ray.exceptions.RayActorError:
                _WORKERS[k] = _worker_actor()
                infos.append(_get(_WORKERS[k].load.remote(self.compiled, worker_opts, checkers)))
        ws = _WORKERS[: self.n_workers]
        info = infos[0]
        header = header.model_copy(update=info)
        if old is not None:  # the device and dtype are known once the workers have loaded (QA pass: a float32
            check_resumable(old, header, o.trace)  # trace went on in bfloat16 under --ray)
        if on_workers is not None:
            on_workers(ray.get([w.pid.remote() for w in ws]))
        t0 = time.perf_counter()  # like Runner.run, the wall time excludes loading the models
        weights = {s: sum(1 for k in range(len(items)) if shard_of(k, shards) == s) for s in range(shards)}
        # Spend no shard owns (attempts of a single-machine run cut short) comes off the top before the split.
        quotas = split_quota(left_of(pool_limits, unattributed), weights) if not pool_limits.is_empty() else {}
        spends.append((None, unattributed.as_dict()))
        # what the pool was charged beyond the finished items before this run: attempts lost to dead workers or
        # kills, and a single-machine trace's steps cut short (QA pass: a wide --resume's pooled line left it out)
        earlier = sum((Cost(**{u: v for u, v in lost.cost.items() if u != "tokens"}) for lost in (old.lost if old else [])),
                      unattributed)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        if not _POOL:
            _POOL.append(ray.remote(num_cpus=0, max_restarts=0)(PoolService).options(scheduling_strategy=here).remote(
                Limits(), {}, None, None, False))
        pool = _POOL[0]
        _get(pool.start.remote(pool_limits, quotas, header.model_dump(mode="json"),
                               str(o.trace) if o.trace else None, o.resume, self.seen if old is not None else None))
        self.per_item: Limits | None = None
        if self.planner.split != "first_come":  # as one machine: random streams follow content over the whole run,
            items = content_seeded(items, o.seed)  # and each item's even cap is the run's pool / N
            self.per_item = even_share(pool_limits, len(items))
        try:
            ray.get(pool.restore.remote(spends))
            todo = [Task(s, [it for k, it in enumerate(items)
                             if shard_of(k, shards) == s and it.index not in done_before])
                    for s in range(shards)]
            report = _reporter(pool, progress, on_steps, len(done_before), len(self.compiled.dag), len(items))
            self.drained = False
            self.isolation = Isolation({t.shard: [it.index for it in t.items] for t in todo})
            self.header = header  # what the trace holds, should the driver have to write to it (runtime/pool_loss.py)
            batches, steps = self._drive(pool, [t for t in todo if t.items], report, should_stop)
            found = ray.get(pool.results.remote())
            self.stats = {**ray.get(pool.stats.remote()), "steps": steps, "restarts": self.restarts}
            if self.drained and any(it.index not in done_before and it.index not in found for it in items):
                raise KeyboardInterrupt
        finally:
            try:
                ray.get(pool.close.remote())
            except ray.exceptions.RayActorError:  # the accountant actor itself died: start a new one next run
                _POOL.clear()
        acc = self.planner.accountant()
        results = []
        for it in items:
            if it.index in done_before:
                rec, nodes = done_before[it.index], nodes_before.get(it.index, [])
            elif it.index in found:
                raw_nodes, raw_item = found[it.index]
                rec, nodes = ItemRecord.model_validate(raw_item), [NodeRecord.model_validate(n) for n in raw_nodes]
            else:
                raise DistributedError(f"item {it.index} was never finished: a bug in the shard bookkeeping")
            results.append(result_from_record(rec))
            acc.restore(it.index, ledger_from_records(nodes))
        summary = self.planner.summary(header, results, acc, time.perf_counter() - t0, batches)
        summary.distributed = {"workers": self.n_workers, "shards": shards, **self.stats}
        beyond = earlier + Cost(**{u: v for u, v in self.stats.get("lost_spend", {}).items() if u != "tokens"})
        summary.pool_beyond_items = {u: round(beyond.get(u), 6) for u in summary.budget_pooled if beyond.get(u) > 0}
        summary.shared_across_items = dict(self.shared)  # what the workers' caches served across items
        return summary

    def _drive(self, pool: Any, tasks: list[Task], report: Callable[[], None] | None,
               should_stop: Callable[[], bool] | None = None) -> tuple[int, int]:
        """Hand shards to workers until every item is in; replace a worker that dies and rerun its rest."""
        o = self.options
        worker_opts = RunOptions(seed=o.seed, device=o.device, dtype=o.dtype, max_batch_items=o.max_batch_items,
                                 judge=o.judge)
        checkers = cli_checker_specs()
        idle = list(range(self.n_workers))
        running: dict[Any, tuple[int, Task, str]] = {}
        generation = [0] * self.n_workers
        self.shared: dict[str, float] = {}
        queue = list(tasks)
        self.granted: dict[str, tuple[int, list[int], Limits]] = {}  # worker name -> its attempt's shard, items, quota
        try:
            return self._loop(pool, queue, idle, running, generation, report, worker_opts, checkers, should_stop)
        except BaseException as e:  # Ctrl-C, SIGTERM, a shard that failed for good: nothing in flight goes unrecorded
            dead = isinstance(e, _ray().exceptions.RayError) and not pool_alive(pool)
            _abandon_shards(pool, running)
            if not dead:
                raise
            in_flight = [(name, *self.granted[name]) for _, _, name in running.values()]
            finished, lost = charge_attempts_in_flight(o.trace, self.header, self.planner.pooled, in_flight)
            raise accountant_died(o.trace, finished, lost) from None

    def _loop(self, pool: Any, queue: list[Task], idle: list[int], running: dict[Any, tuple[int, Task, str]],
              generation: list[int], report: Callable[[], None] | None,
              worker_opts: RunOptions, checkers: Any, should_stop: Callable[[], bool] | None) -> tuple[int, int]:
        ray = _ray()
        batches = steps = 0
        while queue or running:
            if not self.drained and should_stop is not None and should_stop():
                self.drained = True  # the shards running finish their items in flight; the rest never start
                ray.get(pool.drain.remote())
                queue.clear()
            while queue and idle:  # a shard runs on one worker at a time: its quota is one local accountant's
                busy = {t.shard for _, t, _ in running.values()}
                k = next((k for k, t in enumerate(queue) if t.shard not in busy), None)
                if k is None:
                    break
                slot, task = idle.pop(0), queue.pop(k)
                name = f"w{slot}.{generation[slot]}"
                quota = ray.get(pool.shard_left.remote(task.shard))
                ref = _WORKERS[slot].run.remote(task.items, pool, name, task.shard, task.attempt, quota, self.per_item)
                self.granted[name] = (task.shard, [it.index for it in task.items], quota)
                running[ref] = (slot, task, name)
            # short waits: two Ctrl-Cs during one wait reach Python as one (QA pass: a second Ctrl-C 0.3 s after
            # the first did nothing), and the first is acted on sooner
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.1)
            if report is not None:
                report()
            for ref in ready:
                slot, task, name = running.pop(ref)
                try:
                    out = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                    ray.get(pool.settle.remote(name, task.shard))
                    finished = set(ray.get(pool.done.remote()))
                    rest = [it for it in task.items if it.index not in finished]
                    if self.drained:  # stopping: its unfinished items wait for a --resume
                        idle.append(slot)
                        continue
                    try:
                        again, note = self.isolation.after(task, rest, finished, e)
                    except ShardFailedError as failed:
                        raise failed from e
                    self.restarts += 1
                    ray.kill(_WORKERS[slot], no_restart=True)
                    _WORKERS[slot] = _worker_actor()
                    generation[slot] += 1
                    _get(_WORKERS[slot].load.remote(self.compiled, worker_opts, checkers))
                    queue[:0] = again
                    self._condemn(pool, self.isolation.ready(task.shard))
                    if note and self.on_note is not None:
                        self.on_note(note)
                else:
                    batches += out["batches"]
                    steps += out["steps"]
                    for unit, v in out["shared"].items():
                        self.shared[unit] = self.shared.get(unit, 0.0) + v
                    self._condemn(pool, self.isolation.succeeded(task))
                idle.append(slot)
        self._condemn(pool, self.isolation.at_end())
        if report is not None:  # the last items finish after the last look above
            report()
        return batches, steps

    def _condemn(self, pool: Any, entries: list[tuple[Item, str]]) -> None:
        """Record as failed the items that failed their worker alone (runtime/shard_failure.py)."""
        if entries:
            judge = self.planner.judge
            _get(pool.fail_items.remote([condemned_record(it, judge.gold_of(it.gold), why) for it, why in entries]))


def _reporter(pool: Any, progress: Callable[[int], None] | None, on_steps: Callable[[int, int], None] | None,
              before: int, per_item: int, items: int) -> Callable[[], None] | None:
    """One look at the accountant actor, told to the callbacks; the items a resume found finished count whole."""
    if progress is None and on_steps is None:
        return None
    ray = _ray()

    def report() -> None:
        finished, nodes = ray.get(pool.progress.remote())
        if progress is not None:
            progress(before + finished)
        if on_steps is not None:
            total = items * per_item  # a node per step, as one machine's bar counts (a redone attempt: capped)
            on_steps(min(total, max((before + finished) * per_item, before * per_item + nodes)), total)

    return report


def _abandon_shards(pool: Any, running: dict[Any, tuple[int, Any, str]]) -> None:
    """A run stopped with shards in flight: fence their workers and write what their attempts spent as `lost`
    records, as a worker's death does, so that `--resume` counts it against the pool (QA pass: a Ctrl-C dropped
    it, and a resume spent past the pool); then stop them, and read each outcome, so Ray prints no traceback."""
    import contextlib

    ray = _ray()
    with _uninterrupted():
        for _, task, name in running.values():
            with contextlib.suppress(Exception):
                ray.get(pool.settle.remote(name, task.shard), timeout=30)
        for slot, _, _ in running.values():
            with contextlib.suppress(Exception):
                ray.kill(_WORKERS[slot], no_restart=True)
        for ref in running:
            with contextlib.suppress(Exception):
                ray.get(ref, timeout=10)


def need_work_held(items: int, lost: int) -> str:
    """What a cut-short `split = need` trace holds: spend after which its shares cannot be dealt again (QA pass:
    attempts lost to a Ctrl-C, with no item finished, let a resume deal smaller shares without a word)."""
    return f"{items} finished items" + (f" and {lost} lost attempts' spend" if lost else "")


__all__ = ["DistributedError", "PoolService", "RayRunner", "ShardWorker", "connect", "shutdown", "worker_pids"]
