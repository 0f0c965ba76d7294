"""The wide run's answer to a shard that keeps failing (runtime/shard_failure.py): retry, split, fail one item.

The policy is plain bookkeeping over a shard's items, so it is tested here on its own; the end-to-end case (a
real --verifier that ends its Ray worker's process on one question) is
tests/test_distributed.py::test_an_item_that_kills_its_worker_every_time_is_failed_alone_and_the_rest_finish.
"""

from __future__ import annotations

import pytest

from ttcl.runtime.dataset import Item
from ttcl.runtime.ray_cluster import ShardFailedError
from ttcl.runtime.shard_failure import (
    CONDEMNED_MAX,
    MAX_ATTEMPTS,
    Isolation,
    Task,
    condemned_record,
)

pytest.importorskip("ray")


def _items(*indices: int) -> list[Item]:
    return [Item(index=i, question=f"q{i}", gold=str(i)) for i in indices]


def _drive(shard_items: list[int], poison: set[int]) -> tuple[list[int], list[int], int]:
    """Run the policy to its end over one shard whose items in `poison` fail any attempt they are in (each
    attempt runs its items in order and dies at the first poison item): (finished, failed alone, attempts)."""
    iso = Isolation({0: shard_items})
    queue = [Task(0, _items(*shard_items))]
    finished: list[int] = []
    failed: list[int] = []
    attempts = 0
    while queue:
        task = queue.pop(0)
        attempts += 1
        done_here = []
        for it in task.items:
            if it.index in poison:
                break
            done_here.append(it.index)
        finished += done_here
        if len(done_here) == len(task.items):
            failed += [it.index for it, _ in iso.succeeded(task)]
            continue
        rest = [it for it in task.items if it.index not in finished]
        again, note = iso.after(task, rest, set(finished), RuntimeError("worker died"))
        assert note
        queue[:0] = again
        failed += [it.index for it, _ in iso.ready(0)]
    failed += [it.index for it, _ in iso.at_end()]
    return finished, failed, attempts


def test_a_poison_item_is_failed_alone_and_every_other_item_finishes() -> None:
    finished, failed, attempts = _drive(list(range(0, 16, 2)), poison={6})
    assert failed == [6]
    assert sorted(finished) == [0, 2, 4, 8, 10, 12, 14]
    assert attempts <= MAX_ATTEMPTS + 2 * 4  # the retries, then about two attempts per halving


def test_two_poison_items_are_both_found() -> None:
    finished, failed, _ = _drive(list(range(10)), poison={2, 7})
    assert sorted(failed) == [2, 7] and sorted(finished) == [0, 1, 3, 4, 5, 6, 8, 9]


def test_a_fault_in_no_one_item_ends_the_run_without_recording_items_as_failed() -> None:
    """Every attempt dies whatever it runs (a bug, a model that cannot run): after CONDEMNED_MAX items failed
    alone with nothing else finished, the run ends naming the shard's unfinished items; none is written failed."""
    with pytest.raises(ShardFailedError) as e:
        _drive(list(range(8)), poison=set(range(8)))
    assert e.value.left == list(range(8))
    assert f"then {CONDEMNED_MAX} of its items each failed their worker alone" in str(e.value)
    assert "the fault is not in one item" in str(e.value)


def test_the_first_attempts_rerun_the_whole_rest() -> None:
    iso = Isolation({0: [0, 1, 2]})
    again, note = iso.after(Task(0, _items(0, 1, 2)), _items(1, 2), {0}, RuntimeError("boom"))
    assert [(t.attempt, [i.index for i in t.items], t.isolating) for t in again] == [(1, [1, 2], False)]
    assert note == "ray: shard 0's worker failed (boom); its 2 unfinished items run again on a fresh worker (attempt 2 of 3)"


def test_an_item_left_alone_by_finished_neighbours_runs_alone_before_it_is_failed() -> None:
    """A part of [a, b] whose a finished: b has not yet failed alone, so it runs alone once more."""
    iso = Isolation({0: [0, 1]})
    iso.after(Task(0, _items(0, 1), attempt=MAX_ATTEMPTS - 1), _items(0, 1), set(), RuntimeError("x"))
    again, note = iso.after(Task(0, _items(0, 1), isolating=True), _items(1), {0}, RuntimeError("x"))
    assert [[i.index for i in t.items] for t in again] == [[1]] and "runs alone" in note
    assert iso.ready(0) == []


def test_the_failed_record_is_unanswered_wrong_where_gold_is_known_and_costs_nothing() -> None:
    item = Item(index=4, question="1+1", gold="2", extra={"steps": 1})
    rec = condemned_record(item, "2", "its worker process died")
    assert (rec["status"], rec["answer"], rec["correct"], rec["cost"], rec["fields"]) == (
        "failed", None, False, {}, {"steps": 1})
    assert condemned_record(item, None, "x")["correct"] is None
