"""Which items `ttcl eval --pool` leaves out of every table, and the line on stderr that says so: items the judge
could not grade, and items whose pool is not whole. Every table then compares the same items."""

from __future__ import annotations

from typing import Any

from ttcl.errors import TtclRuntimeError


def short_pools(pool_runs: dict[str, list[list[Any]]], greedy_runs: dict[str, list[list[Any]]], total: int,
                 ungraded: set[int], n: int) -> dict[int, int]:
    """Items whose pool in some run holds fewer candidates than the series' whole pool (the most any item drew:
    `--pool n` for a program that samples n; 1 for a greedy run): the item stopped, failed or was shrunk by
    `on_exhaust` before it drew them all. The estimators need every item's full pool (a k
    above one item's pool has no estimate for it), so such items leave every table, said on stderr, rather than
    cutting every k above the smallest pool for all items (item -> the fewest candidates it had)."""
    import typer

    out: dict[int, int] = {}
    whole = 1
    for greedy, runs in ((False, pool_runs), (True, greedy_runs)):
        for seeds in runs.values():
            pools = [p for run in seeds for p in run]
            want = 1 if greedy else max([p.pool.n for p in pools] + [1])  # a program may sample other than n
            whole = max(whole, 1 if greedy else want)
            for p in pools:
                if p.pool.n < want and p.index not in ungraded:
                    out[p.index] = min(out.get(p.index, want), p.pool.n)
    if not out:
        return out
    first, got = min(out.items())
    if whole == 1 and all(c == 0 for c in out.values()):  # no pool drew anything: name the pool asked for, --pool n
        whole = n  # (QA pass: "fewer candidates than the pool of 1")
    line = (f"{len(out)} of {total} items drew fewer candidates than the pool of {whole} (or no greedy answer): they "
            f"stopped, failed or were shrunk by the program's `on_exhaust` (first: item {first}, with {got})")
    if len(out) + len(ungraded) >= total:
        raise TtclRuntimeError(f"--pool: {line}; no item has a full pool, so there is no curve to report (give the "
                               "program a budget that fits the pool, or a smaller --pool n)")
    typer.echo(f"--pool: {line}: left out of every table, greedy point, exchange and allocation", err=True)
    return out


def ungraded_items(runs: list[list[list[Any]]], total: int, judge: str) -> dict[int, str]:
    """The items the judge could not grade in some run (item -> the first error), said on stderr; when it graded
    none, there is nothing to report: an error (exit 2) naming the first failure."""
    import typer

    from ttcl.runtime.judge import failure_line

    out: dict[int, str] = {}
    for seeds in runs:
        for run in seeds:
            for p in run:
                if p.judge_error is not None:
                    out.setdefault(p.index, p.judge_error)
    if not out:
        return out
    line = failure_line(judge, sorted(out.items()), total).replace(" items (first", " items' pools (first", 1)
    if len(out) >= total:
        raise TtclRuntimeError(f"--pool: {line.split(';')[0]}: no item is graded, so there is no accuracy "
                               "to report (fix the checker, or judge another way)")
    typer.echo(f"--pool: {line}: left out of every table, greedy point, exchange and allocation", err=True)
    return out
