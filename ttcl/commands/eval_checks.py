"""`ttcl eval`'s checks before any sampling: every --sweep configuration, --compare/--greedy series, the --pool
param and its greedy point, --allocate's probe and baseline, and each --overlay file compile or read cleanly, so
that a mistake fails in a second, in words about the option, not after the pool has run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ttcl.commands.compile import rebind_models
from ttcl.commands.run import RunOptionError
from ttcl.runtime.dataset import items_digest


def greedy_sets(param: str) -> list[str]:
    """The params of each series' greedy point: k = 1 at temperature 0."""
    return [f"{param}=1", "temperature=0"]


def point_sets(sets: list[str], extra: list[str], *, override: bool = False) -> list[str]:
    """The --set list a pool or greedy run compiles with; `override`: `extra` wins over --set (the greedy point is
    k = 1 at temperature 0 whatever --set gives the pool)."""
    from ttcl.compiler.params import parse_set_overrides

    if not override:
        return list(sets) + extra
    fixed = parse_set_overrides(extra)
    return [f"{k}={v}" for k, v in parse_set_overrides(sets).items() if k not in fixed] + extra


def parse_pool(pool: str) -> tuple[str, int]:
    name, eq, value = pool.partition("=")
    if not eq or not name.strip() or not value.strip().isdigit() or int(value) < 1:
        raise RunOptionError(f"--pool {pool!r}: expected PARAM=N, the param that sets the samples per item "
                              "and N >= 1, e.g. --pool n=16")
    return name.strip(), int(value)


def check_sweep(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None,
                configs: list[list[tuple[str, str]]]) -> None:
    """Compile every --sweep configuration before any sampling; an error names `--sweep k=v`, not the `--set k=v`
    the user never typed."""
    from ttcl.commands.compile import compile_from_cli
    from ttcl.errors import TtclError

    for config in filter(None, configs):  # no --sweep is one empty configuration
        try:
            compile_from_cli(program, list(sets) + [f"{k}={v}" for k, v in config], binds, None, allow_remote)
        except TtclError as e:
            said = str(e)
            for k, v in config:
                said = said.replace(f"`--set {k}={v}`", f"`--sweep {k}={v}`")
            if "`--sweep " not in said:  # refused where the value is used (`n` of `sample` is 0): which value (QA pass)
                said = f"--sweep {','.join(f'{k}={v}' for k, v in config)}: {said}"
            raise RunOptionError(said) from None


def check_series(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None,
                 series: list[tuple[str, tuple[str, list[str]]]]) -> None:
    """Compile every --compare/--greedy series before any sampling, so that a typo in the last one
    fails in a second, not after the whole pool has run; the error names the option."""
    from ttcl.commands.compile import compile_from_cli
    from ttcl.errors import TtclError

    for opt, (_, extra) in series:
        try:
            compile_from_cli(program, sets, rebind_models(binds, extra), None, allow_remote)
        except TtclError as e:  # the binding was given as OPT NAME=REF, not --model (QA pass: named --model)
            said = str(e)
            for b in extra:
                said = said.replace(f"`--model {b}`", f"`{opt} {b}`")
            named = any(f"`{opt} {b}`" in said for b in extra)  # said once, not twice (QA pass)
            raise RunOptionError(said if named else f"{opt} {','.join(extra)!r}: {said}") from None


def check_pool(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None, pool: str) -> None:
    """`--pool PARAM=N` sets PARAM, and each series' greedy point runs the program at `temperature=0`:
    both params must exist, which is said before any sampling, in words about --pool."""
    from ttcl.commands.compile import compile_from_cli
    from ttcl.errors import TtclError
    from ttcl.runtime.analysis.collect import find_pool_nodes

    param, n = parse_pool(pool)
    declared = compile_from_cli(program, sets, binds, None, allow_remote).params
    for name, why in ((param, "the samples per item"),
                      ("temperature", "each series' greedy point (k = 1) runs the program at temperature=0")):
        if name not in declared:
            raise RunOptionError(f"--pool {pool}: {program.name} has no param `{name}` ({why}); its params: "
                                 f"{', '.join(declared) or 'none'}")
    def compiled_at(extra: list[str], what: str, override: bool) -> Any:
        try:  # QA pass: a range that leaves out 1 failed the greedy point after the whole pool was sampled
            return compile_from_cli(program, point_sets(sets, extra, override=override), binds, None, allow_remote)
        except TtclError as e:
            said = str(e).strip().splitlines()[0].split(": error: ", 1)[-1]
            raise RunOptionError(f"--pool {pool}: {what} runs {program.name} at {', '.join(extra)}, which it refuses: "
                                 f"{said}") from None

    dag = compiled_at([f"{param}={n}"], "the pool", override=False).dag
    compiled_at(greedy_sets(param), "each series' greedy point", override=True)
    try:
        node_id = find_pool_nodes(dag).sample
    except ValueError as e:
        raise RunOptionError(f"--pool {pool}: {e}") from None
    drawn = dag[node_id].args.n
    if drawn is not None and drawn != n:  # QA pass: `--pool beams=2` on beam search pooled 8 partial lines
        raise RunOptionError(
            f"--pool {pool}: at {param}={n} the pool's sample node ({node_id}) draws {drawn} candidates, not "
            f"{n}: --pool's param must be that node's sample count (`n = {param}`), so that its candidates are "
            f"the program's {n} samples per item; a search or adaptive program is measured with --sweep")


def check_allocation(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None,
                     alloc: tuple[str, int, str | None], baseline: str, n: int) -> None:
    """`--baseline` and a probe's verifier must be signals of the pool the program draws: say so
    before sampling, not after it."""
    from ttcl.commands.compile import compile_from_cli
    from ttcl.runtime.analysis.collect import find_pool_nodes, pool_signals

    try:
        nodes = find_pool_nodes(compile_from_cli(program, sets, binds, None, allow_remote).dag)
        signals, scorers = pool_signals(nodes)
    except ValueError as e:
        raise RunOptionError(f"--pool: {e}") from None
    if baseline not in signals:
        raise RunOptionError(f"--baseline {baseline!r}: not a signal of this pool (signals: {', '.join(signals)})")
    kind, probe, verifier = alloc
    if kind != "field" and probe > n:
        raise RunOptionError(f"--allocate {kind}:{probe}: the probe needs {probe} samples, the pool draws {n}")
    if verifier is not None and verifier not in scorers:
        exact = [name for name, k in nodes.verifiers.values() if k == "check"]
        why = (f"`{verifier}` is an exact checker, which reads the gold answer: a difficulty probe must not"
               if verifier in exact else f"no verifier {verifier!r} scores the pool")  # QA pass: it said the latter
        raise RunOptionError(f"--allocate {kind}:{probe}:{verifier}: {why} (probe verifiers: "
                             f"{', '.join(scorers) or 'none'})")


def read_sweep(path: Path, items: list[Any], judge: str) -> dict[str, Any]:
    """A `--json` sweep to overlay, refused unless it ran on these very items (their questions and golds, in this
    order), judged as this eval judges: paired differences over other questions, or other verdicts, would look like
    results (QA passes: a same-sized file passed; a sweep judged by gold equality was read against a pool judged
    by a checker)."""
    n_items = len(items)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunOptionError(f"--overlay {path}: cannot read it as JSON ({e})") from e
    if not isinstance(data, dict) or data.get("mode") != "sweep":
        raise RunOptionError(f"--overlay {path}: expected the --json output of a `ttcl eval --sweep` run")
    counts = {r.get("items") for r in data.get("rows", [])}
    if counts != {n_items}:
        raise RunOptionError(f"--overlay {path}: its rows cover {', '.join(str(c) for c in sorted(counts, key=str))} "
                             f"items, this eval {n_items}; "
                             "use the same dataset and --limit")
    if (theirs := data.get("judge", "gold")) != judge:
        raise RunOptionError(f"--overlay {path}: its rows were judged by `{theirs}`, this eval's by `{judge}`; rerun the "
                             f"sweep with --judge {judge}, so that both count the same answers right")
    golds = {it.index: it.gold for it in items}
    other = (data["items_digest"] != items_digest(items) if "items_digest" in data else  # a file before the digest:
             any(golds.get(r.get("item")) != r.get("gold") for row in data["rows"] for r in row.get("item_rows", [])))
    if other:
        raise RunOptionError(f"--overlay {path}: it was run on other items than this eval's ({data.get('dataset')} "
                             f"against {len(items)} items of this --dataset); use the same dataset and --limit")
    return data
