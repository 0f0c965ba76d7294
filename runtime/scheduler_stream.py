"""Scheduling against a server: each item advances as soon as its own calls return.

The lockstep scheduler suits one local batch: each step waits for its
slowest request. A server batches continuously, so here every request of a
model node on an endpoint backend (one with `submit`) is sent the moment
its job asks, up to the endpoint's concurrency limit, and each job is
completed (charged, next phase queued, node settled) as soon as its own
requests are back; its item then runs its next ready nodes right away. One
long generation holds only its own item.

Everything else is the lockstep scheduler's: jobs, gates and the
accountant (allowances are reserved before a request is sent, so items in
flight together can never jointly overspend), per-sample seeds (derived
from (seed, item, node, sample) only), failures isolated per item. Calls to
local backends and verifiers still run as batches, over whatever is ready.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait

from ttcl.compiler.costmodel import Cost
from ttcl.runtime.dataset import Item
from ttcl.runtime.jobs import GenCall, Job
from ttcl.runtime.scheduler import ItemResult, RunInterrupted, Scheduler, _ItemRun, settle_future
from ttcl.runtime.values import Value

STOP_POLL_S = 0.25  # how often a wait on requests in flight asks whether to stop


class StreamScheduler(Scheduler):
    """The scheduler with per-item progress against endpoint backends."""

    def _remote(self, job: Job) -> bool:
        return all(isinstance(c, GenCall) and hasattr(self.backends[c.model], "submit") for c in job.calls)

    def run(self, items: list[Item], on_result: Callable[[ItemResult], None] | None = None,
            replay: Mapping[int, list[tuple[str, Value, Cost, str | None]]] | None = None,
            should_stop: Callable[[], bool] | None = None,
            should_drain: Callable[[], bool] | None = None) -> list[ItemResult]:
        """As `Scheduler.run`; a stop request ends the run at once, within STOP_POLL_S of it (calls still in flight
        are cancelled and lost, and `--resume` charges the pool their grants)."""
        self.replay = dict(replay or {})
        for h in self.hooks:
            h.before_run(items=len(items), nodes=len(self.dag), replayed=sum(len(r) for r in self.replay.values()))
        results: dict[int, ItemResult] = {}
        queue = list(items)
        active: list[_ItemRun] = []
        flying: dict[Future, tuple[_ItemRun, Job, GenCall]] = {}
        open_calls: dict[int, int] = {}  # id(job) -> its requests still in flight
        touched: list[_ItemRun] = []  # items whose state changed: only they can have new work
        left = 0  # items a drain did not start
        try:
            while queue or active:
                room = self.max_batch_items is None or len(active) < self.max_batch_items
                if should_drain is not None and queue and room and should_drain():
                    left, queue = left + len(queue), []
                while queue and (self.max_batch_items is None or len(active) < self.max_batch_items):
                    run = self._new_run(queue.pop(0))
                    active.append(run)
                    touched.append(run)
                for run in touched:
                    self._advance(run)
                local: list[tuple[_ItemRun, Job]] = []
                self._before_calls()  # this round's reservations reach a wide run's ledger before any request
                for run in touched:
                    for job in list(run.jobs.values()):
                        if not job.calls or id(job) in open_calls:
                            continue
                        if self._remote(job):
                            open_calls[id(job)] = len(job.calls)
                            for call in job.calls:
                                self.batches.append((call.model, 1))
                                flying[self.backends[call.model].submit(call.request)] = (run, job, call)
                        else:
                            local.append((run, job))
                touched = [run for run, _ in local]
                if local:
                    self._execute_jobs(local)
                elif flying:
                    done: set[Future] = set()
                    while not done:  # a stop is heard while a long request is out, not once it returns
                        done, _ = wait(list(flying), timeout=None if should_stop is None else STOP_POLL_S,
                                       return_when=FIRST_COMPLETED)
                        if not done and should_stop is not None and should_stop():
                            raise RunInterrupted(f"{len(results)} items finished, {len(active) + len(queue)} not")
                    for fut in done:
                        run, job, call = flying.pop(fut)
                        settle_future(call, fut)
                        open_calls[id(job)] -= 1
                        if open_calls[id(job)] == 0:
                            del open_calls[id(job)]
                            self._complete(run, job)
                            touched.append(run)
                elif not touched:  # nothing in flight and nothing new: every remaining item is settled or stuck
                    touched = list(active)
                touched = list({id(r): r for r in touched}.values())
                active = self._retire(active, results, on_result)
                if should_stop is not None and (queue or active) and should_stop():
                    raise RunInterrupted(f"{len(results)} items finished, {len(active) + len(queue)} not")
        except BaseException:  # stopped or failed: what is still out is cancelled, so its connection closes and
            for fut in flying:  # the server drops it (a client's hang-up left a server generating on)
                fut.cancel()
            raise
        if left:
            raise RunInterrupted(f"{len(results)} items finished, {left} not started")
        ordered = [results[i.index] for i in items]
        for h in self.hooks:
            h.after_run(results=ordered)
        return ordered
