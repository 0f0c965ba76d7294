"""A wide run's faults on a real local Ray cluster: a Ctrl-C; a worker, or the accountant actor, killed by its pid
with SIGKILL mid-run (the way an operator or the OOM killer would); an item that kills its worker every time.

The fixtures are test_distributed.py's, so this module starts a cluster of its own (2 CPUs, 127.0.0.1), shut down
at its end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

import test_distributed as wide  # noqa: E402

from ttcl.cli import main  # noqa: E402
from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.runtime import distributed  # noqa: E402
from ttcl.runtime.dataset import load_dataset  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions  # noqa: E402
from ttcl.runtime.trace import read_trace  # noqa: E402

pytestmark = pytest.mark.ray

cluster, data, reference = wide.cluster, wide.data, wide.reference  # fixtures, instantiated for this module
ROOT, ADAPTIVE, POOLED, USERS_CHECKER = wide.ROOT, wide.ADAPTIVE, wide.POOLED, wide.USERS_CHECKER
_answers, _items_in = wide._answers, wide._items_in


def test_a_ctrl_c_records_what_the_shards_in_flight_spent(cluster: Any, data: dict[str, Path]) -> None:
    """Ctrl-C on a wide run (a KeyboardInterrupt in the driver, where the CLI's SIGINT lands) dropped the spend of
    the attempts in flight: no `lost` record, so a `--resume` could spend past the pool (QA pass: 2.3e8 FLOPs the
    ledger had charged were in no record). Now each in-flight attempt is settled and written, as a dead worker's."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    # 24 longer items, one at a time per shard, and a pool of 100 calls (every item runs; the module's 8 items
    # and 22 calls let a run on warm workers end before a look found an attempt in flight: it failed in CI)
    roomy = data["root"] / "roomy.ttc"
    roomy.write_text(POOLED.replace("calls <= 22;", "calls <= 100;"))
    ds = data["root"] / "longer_ctrl_c.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(24, [4, 5, 6], 7))))
    compiled = compile_program(roomy)
    items = load_dataset(ds)
    trace = data["root"] / "ctrl_c.jsonl"
    looks = []

    def interrupt(_: int) -> None:
        looks.append(True)
        if len(looks) >= 2:  # the second look, half a second in: each worker holds an item's reservation
            raise KeyboardInterrupt

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, progress=interrupt)
    stats = ray.get(distributed._POOL[0].stats.remote())
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    kept = sum(r["cost"]["calls"] for r in recs if r["type"] in ("item", "lost"))
    assert any(r["type"] == "lost" for r in recs)
    assert stats["held"]["calls"] == 0 and kept == pytest.approx(stats["spent"]["calls"])  # every charge recorded
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert sorted(read_trace(trace).items) == [it.index for it in items]
    lost = sum(r.cost["calls"] for r in read_trace(trace).lost)
    assert resumed.actual_total["calls"] + lost <= 100  # the pool, with what the interrupted attempts spent


def test_a_first_ctrl_c_finishes_the_items_in_flight_and_loses_nothing(cluster: Any, data: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """The first Ctrl-C of a wide run (`should_stop`, as the CLI's handler sets it) stopped at once: the attempts
    in flight were lost and charged to the pool (QA pass: 54% of a binding pool). Now the workers finish the
    items they started and start no more; no `lost` record is written, and the resume answers as one run."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    ds = tmp_path / "longer.jsonl"  # the module's 8 items can all finish before the second look
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(24, [4, 5, 6], 5))))
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(ds)
    trace = tmp_path / "drained.jsonl"
    asked = []

    def ctrl_c() -> bool:  # asked before the shards go out, then about twice a second: Ctrl-C at the second look
        asked.append(True)
        return len(asked) >= 2

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, should_stop=ctrl_c)
    back = read_trace(trace)
    assert not back.lost and 1 <= len(back.items) < len(items)
    stats = ray.get(distributed._POOL[0].stats.remote())
    assert stats["held"]["calls"] == 0  # every reservation settled as a charge of a finished item
    assert stats["spent"]["calls"] == pytest.approx(sum(rec.cost["calls"] for rec in back.items.values()))
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert _answers(resumed) == _answers(Runner(compiled, RunOptions(device="cpu")).run(items))


def test_a_wide_resume_counts_the_spend_its_trace_lost_in_the_pooled_line(cluster: Any, data: dict[str, Path]) -> None:
    """QA pass: after a Ctrl-C that lost attempts, a wide --resume enforced the lost spend but its `budget pooled`
    line (and `pool_beyond_items`) left it out, 2.1e9 / 4.5e10 where 4.1e10 was charged; one machine said it.
    The trace a kill leaves is made here from a finished run (whether a real Ctrl-C catches an attempt in flight
    depends on timing): the first two items' records dropped, and a `lost` record of two calls for one of them (as
    if a kill had cut its attempt short after its first calls)."""
    from ttcl.runtime.trace import LostRecord

    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    trace = data["root"] / "lost_then_resumed.jsonl"
    distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace), workers=2).run(items)
    dropped = {items[0].index, items[1].index}
    lines = [x for x in trace.read_text().splitlines(keepends=True)
             if json.loads(x).get("item") not in dropped or json.loads(x)["type"] == "header"]
    lost = LostRecord(item=items[1].index, worker="w1.0", shard=1,
                      cost={"calls": 2.0, "prompt_tokens": 0.0, "gen_tokens": 0.0, "flops": 0.0, "seconds": 0.0})
    trace.write_text("".join(lines) + lost.model_dump_json() + "\n")
    assert len(read_trace(trace).lost) == 1
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)
    assert resumed.items == len(items)
    assert resumed.pool_beyond_items == {"calls": 2.0}
    assert resumed.actual_total["calls"] + resumed.pool_beyond_items["calls"] <= 22  # the pool: calls <= 22


def test_a_need_split_cut_short_before_any_item_is_refused_on_resume(cluster: Any, data: dict[str, Path]) -> None:
    """`split = need` deals each shard's quota out at once: a Ctrl-C that saved no item but lost attempts' spend was
    resumed without a word, dealing smaller shares, and 39 of 60 answers moved (QA pass). The lost spend counts as
    work done: the resume is refused, before the cluster (the CLI) and by the runner."""
    from ttcl.commands.wide import Wide, check_trace_before_the_cluster
    from ttcl.errors import TtclError

    compiled = compile_program(ROOT / "programs" / "pooled_adaptive.ttc")
    items = load_dataset(data["ds"])
    trace = data["root"] / "need_cut.jsonl"

    def interrupt(done: int, _: int) -> None:
        if done:  # at the first look after a node step: the items wait at `allot`, their probes spent
            raise KeyboardInterrupt  # (at the first look of all, a worker on a loaded box may have spent nothing)

    runner = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace), workers=2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(items, on_steps=interrupt)
    assert read_trace(trace).lost
    # The QA pass's Ctrl-C landed before any item record was written; here a fast item may have finished first:
    # its record is dropped, leaving the trace that Ctrl-C leaves (header, node and lost records, no item)
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text("".join(x for x in lines if json.loads(x)["type"] != "item"))
    cut = read_trace(trace)
    assert not cut.items and cut.lost
    with pytest.raises(TtclError, match=r"already holds 0 finished items and \d+ lost attempts' spend; rerun with "
                                        "--overwrite"):
        check_trace_before_the_cluster(compiled, Wide("local", 2, None), items, trace, resume=True)
    with pytest.raises(distributed.DistributedError, match="lost attempts' spend"):
        distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True), workers=2).run(items)



def test_a_worker_killed_by_pid_mid_run_loses_no_item(cluster: Any, data: dict[str, Path], reference: Any) -> None:
    compiled = compile_program(ADAPTIVE)
    items = load_dataset(data["ds"])
    trace = data["root"] / "killed.jsonl"
    opts = RunOptions(device="cpu", trace=trace, max_batch_items=1)  # one item at a time: the shard takes a while
    pids: list[int] = []
    out: dict[str, Any] = {}

    def drive() -> None:
        try:
            out["summary"] = distributed.RayRunner(compiled, opts, workers=2).run(items, on_workers=pids.extend)
        except BaseException as e:  # surfaced by the assertions below
            out["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    # Generous waits: on a box shared with other jobs, starting workers alone has taken minutes.
    deadline = time.monotonic() + 900
    while t.is_alive() and time.monotonic() < deadline and not any(i % 2 == 0 for i in _items_in(trace)):
        time.sleep(0.05)  # shard 0 (the even items) has finished its first item: kill its worker mid-shard
    assert pids and t.is_alive(), out.get("error")
    os.kill(pids[0], signal.SIGKILL)
    t.join(timeout=900)
    assert not t.is_alive() and "error" not in out, out.get("error")
    summary = out["summary"]
    assert summary.distributed["restarts"] == 1
    # Same answers and the same charges as the run without a kill: the rerun starts with a cold prefix
    # cache, but each item is charged its prefill as if it ran alone (docs/runtime.md, "Running wide").
    assert _answers(summary) == _answers(reference)
    back = read_trace(trace)
    assert sorted(back.items) == [it.index for it in items]
    lost_calls = sum(rec.cost.get("calls", 0) for rec in back.lost)
    # The pool counted every attempt: the finished items plus whatever the killed attempt spent.
    assert summary.distributed["spent"]["calls"] == pytest.approx(summary.actual_total["calls"] + lost_calls)


def test_an_accountant_killed_mid_run_leaves_its_attempts_in_flight_charged_to_the_pool(
        cluster: Any, data: dict[str, Path]) -> None:
    """The accountant actor SIGKILLed (the OOM killer's way): the run ended as "a bug in ttcl" (exit 70), the
    attempts in flight went unrecorded, and a --resume dealt the pool out again as if they had spent nothing (QA
    pass). Now they are written as `lost` at their worst case, and the resumed run stays within the pool."""
    from ttcl.runtime.ray_cluster import DistributedError

    compiled = compile_program(data["pooled"])
    items = load_dataset(data["ds"])
    trace = data["root"] / "accountant.jsonl"
    out: dict[str, Any] = {}

    def drive() -> None:
        try:
            out["summary"] = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1),
                                                   workers=2).run(items)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    deadline = time.monotonic() + 900
    while t.is_alive() and time.monotonic() < deadline and not _items_in(trace):
        time.sleep(0.05)  # an item is in: both shards are running
    assert t.is_alive(), out
    os.kill(ray.get(distributed._POOL[0].pid.remote()), signal.SIGKILL)
    t.join(timeout=900)
    assert isinstance(out.get("error"), DistributedError), out
    said = str(out["error"])
    assert said.startswith("the run's accountant (the Ray actor ray::PoolService) died: ") and "--resume" in said
    back = read_trace(trace)
    assert back.lost and len(back.items) < len(items)
    assert f"{len(back.items)} finished item" in said and f"the {len(back.lost)} attempt" in said
    resumed = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, resume=True, max_batch_items=1),
                                    workers=2).run(items)
    assert [r["item"] for r in resumed.results] == [it.index for it in items]
    final = read_trace(trace)
    recorded = sum(r.cost.get("calls", 0) for r in final.items.values()) + sum(r.cost.get("calls", 0) for r in final.lost)
    assert recorded <= 22  # `budget pooled { calls <= 22 }`: every attempt, the unknown ones at their worst case


def test_an_item_a_shards_share_stops_is_said_so(cluster: Any, data: dict[str, Path]) -> None:
    """Each shard has a fixed share of the pool: items stopped "budget exhausted: pooled calls" beside a pool line of
    6 / 7 (two shares of 3.5 calls; QA pass). The reason names the shard's share."""
    prog = data["root"] / "shares.ttc"
    prog.write_text(POOLED.replace("calls <= 22", "calls <= 7"))
    summary = distributed.RayRunner(compile_program(prog), RunOptions(device="cpu"), workers=2).run(
        load_dataset(data["ds"])[:6])
    stopped = [r for r in summary.results if r["status"] == "stopped"]
    assert stopped and summary.actual_total["calls"] < 7
    for r in stopped:
        shard = 0 if r["item"] % 2 == 0 else 1
        assert r["failures"]["main/paths"] == f"budget exhausted: pooled calls (shard {shard}'s share of the pool)"


@pytest.mark.slow
def test_pooled_budget_holds_under_real_worker_kills(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random programs and budgets, a worker SIGKILLed after a random delay: every item done, pool held."""
    import random
    import sys

    from hypothesis import HealthCheck, given, reject, settings
    from hypothesis import strategies as st

    sys.path.insert(0, str(Path(__file__).parent))
    from gen_budget_programs import budget_programs
    from test_pool import MODEL_DIR, budgets

    from ttcl.compiler.costmodel import STATIC_UNITS
    from ttcl.errors import TtclSemanticError
    from ttcl.runtime.dataset import Item

    if not (MODEL_DIR / "config.json").exists():
        from ttcl.runtime.backends.random_model import save_random_gpt2

        save_random_gpt2(MODEL_DIR, n_positions=512)

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(prog=budget_programs(), budget=budgets(), delay=st.floats(0.0, 3.0), victim=st.integers(0, 1))
    def check(prog: Any, budget: tuple[str, str], delay: float, victim: int) -> None:
        src = prog.source.replace('model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)',
                                  f'model policy = "{MODEL_DIR}"').replace("verifier orm = reward(rm)",
                                                                           'verifier orm = check("arith")')
        src = src.replace("\nstrategy main", "\n" + budget[0] + budget[1] + "strategy main", 1)
        path = tmp_path_factory.mktemp("k") / "prog.ttc"
        path.write_text(src)
        try:
            compiled = compile_program(path)
        except TtclSemanticError:  # e.g. a generated program too long for the random model's 512 positions
            reject()
        items = [Item(index=i, question=q) for i, q in enumerate(["12 +7 *2", "5 -3", "9 *2", "40 -1 +3", "7 +7"])]
        trace = path.parent / f"t{random.randrange(10**9)}.jsonl"
        pids: list[int] = []
        out: dict[str, Any] = {}

        def drive() -> None:
            try:
                out["s"] = distributed.RayRunner(compiled, RunOptions(device="cpu", trace=trace, max_batch_items=1),
                                                 workers=2).run(items, on_workers=pids.extend)
            except BaseException as e:
                out["e"] = e

        t = threading.Thread(target=drive)
        t.start()
        while not pids and t.is_alive():
            time.sleep(0.02)
        time.sleep(delay)
        if pids and t.is_alive():
            try:
                os.kill(pids[victim], signal.SIGKILL)
            except ProcessLookupError:
                pass
        t.join(timeout=300)
        assert "e" not in out, out.get("e")
        s = out["s"]
        assert [r["item"] for r in s.results] == list(range(len(items)))
        pooled, per_item = s.budget_pooled, s.budget_item
        for unit in STATIC_UNITS:
            u = unit.value
            if u in pooled:  # everything spent, every attempt, lost ones in full
                assert s.distributed["spent"][u] <= pooled[u] * (1 + 1e-9) + 1e-9, (u, s.distributed)
            if u in per_item:
                assert s.actual_max[u] <= per_item[u] * (1 + 1e-9) + 1e-9, u

    check()


def test_an_item_that_kills_its_worker_every_time_is_failed_alone_and_the_rest_finish(
        cluster: Any, data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """A "poison" item (a --verifier that ends its process on one question) fails its shard 3 times. QA pass:
    the run ended with Ray's raw text; then (session 36) with the shard's unfinished items named, 6 of 12 saved.
    Now the shard's rest is split until the item fails alone: it is recorded as failed, every other item
    finishes as on one machine, and a resume keeps it failed without running anything."""
    from ttcl.compiler import checks_calls
    from ttcl.runtime import tasks

    request.addfinalizer(checks_calls.registered_checkers.cache_clear)
    lines = data["ds"].read_text().splitlines()
    first = json.loads(lines[0])["question"]
    (tmp_path / "poison_r7.py").write_text(
        "import os\n\n\ndef longest(question, completion):\n"
        f"    if question.strip() == {first.strip()!r}:\n        os._exit(1)\n"
        "    return min(1.0, len(completion) / 100)\n")
    prog = tmp_path / "mine.ttc"
    prog.write_text(USERS_CHECKER)
    trace = tmp_path / "poison.jsonl"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_CLI", {})
    monkeypatch.setattr(tasks, "_CLI_SPECS", {})
    args = ["run", str(prog), "--dataset", str(data["ds"]), "--device", "cpu", "--verifier",
            "longest=poison_r7:longest", "--json"]
    code = main([*args, "--trace", str(trace), "--ray", "--workers", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for attempt in (2, 3):  # each restart is said as it happens
        assert f"unfinished items run again on a fresh worker (attempt {attempt} of 3)" in err, err
    assert "ray: shard 0's worker failed for the last time (its worker process died); its " in err, err
    assert "ray: item 0 fails its worker when it runs alone (its worker process died): it is recorded as failed" in err
    wide = {r["item"]: r for r in json.loads(out)["results"]}
    assert wide[0]["status"] == "failed" and wide[0]["answer"] is None and wide[0]["correct"] is False
    assert "its worker failed each time it ran this item, the last time alone" in wide[0]["error"]
    saved = read_trace(trace)
    assert sorted(saved.items) == list(range(len(lines))) and saved.items[0].status == "failed"
    assert saved.lost  # what the failed attempts spent is in the trace
    # every other item is as on one machine, with the same checker less its poison (it would end this process)
    (tmp_path / "plain_r7.py").write_text(
        "def longest(question, completion):\n    return min(1.0, len(completion) / 100)\n")
    code = main([*args[:-2], "longest=plain_r7:longest", "--json"])
    one, _ = capsys.readouterr()
    assert code == 0
    for r in json.loads(one)["results"][1:]:
        assert (wide[r["item"]]["answer"], wide[r["item"]]["status"]) == (r["answer"], r["status"])
    code = main([*args, "--trace", str(trace), "--ray", "--workers", "2", "--resume"])
    again, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(again)["results"] == json.loads(out)["results"]
    assert ("1 items failed in the earlier run and are kept as failed; `--resume --retry-failed` without --ray runs "
            "them again") in err
