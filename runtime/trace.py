"""The run trace: JSONL, one header, then node records as nodes finish and an item record per item.

Work reaches the file as it finishes, not when the run ends: each node
record is written (and handed to the OS) when its node settles, so a kill
loses at most the batch that was running. An item counts as done only when
its item record is there (written with an fsync); `--resume` skips done
items and replays the finished nodes of the others from their recorded
outputs, so their work is not paid for twice.

Two small records keep a pooled budget sound across a kill: `grant` is
written before a spending node's calls run (the most they may spend) and
`spend` after (what they spent). On resume the pool is charged everything
spent in every attempt plus every grant that never saw its spend (calls a
kill cut short): the worst case of work that was done and lost. The header
pins what the run was (program hash, params, models, seed, dataset), and
`--resume` refuses a trace written by a different run.

`retry` (`--resume --retry-failed`) withdraws a failed item's record: the
item's node records it names as kept are replayed and count towards the
item's next record; the others are retired (their spend still counts in
`spend`). A trace without `retry` records reads as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ttcl import __version__
from ttcl.errors import TtclRuntimeError
from ttcl.safeio import make_parents

TRACE_VERSION = 1

# Header fields that must match for `--resume` to continue a trace.
_RESUME_KEYS = ("program_hash", "params", "models", "model_files", "tokenizer_files", "seed", "dataset_hash",
                "budget", "judge", "answers", "device", "dtype", "checkers")
# compared only where both the trace and the run record them: a wide run's driver knows no dtype before its
# workers load, older traces hold no `checkers`, and a run without `--verifier` has none
_WHEN_BOTH = ("device", "dtype", "checkers", "model_files", "tokenizer_files")


class TraceError(TtclRuntimeError):
    """A trace that cannot be written, read, or resumed; `changed`: what differs, when a resume is refused."""

    changed: str | None = None


def digest(value: Any) -> str:
    """A short stable digest of any JSON-able value: what the trace records for a node's inputs."""
    blob = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunHeader(BaseModel):
    """What a run was: enough to reproduce it and to tell whether a trace may be resumed."""

    model_config = ConfigDict(extra="allow")

    type: Literal["header"] = "header"
    version: int = TRACE_VERSION
    ttcl_version: str = ""
    program: str
    program_hash: str
    program_files: dict[str, str] = {}  # each file of the program ("" the root) and a hash of its text; older: {}
    params: dict[str, Any] = {}
    models: dict[str, str] = {}
    model_files: dict[str, str] = {}  # a local model's weights, fingerprinted (runtime/run_trace.py); older: {}
    tokenizer_files: dict[str, str] = {}  # a local model's tokenizer files, fingerprinted; before 2026-12-08: {}
    seed: int = 0
    dataset: str | None = None
    dataset_hash: str | None = None
    items: int = 0
    budget: dict[str, Any] = {}
    flops_formula: str = ""
    device: str = ""
    dtype: str = ""
    judge: str = "gold"  # how answers were judged right: gold equality, or a checker's name (--judge)
    # how answers were read, where a task's checker reads them a way of its own ("countdown canonical 1":
    # one computation written in another order is one answer); "" otherwise, and in older traces
    answers: str = ""
    # `--verifier NAME=module:function` the run's program or judge uses, NAME -> module:function (QA pass: a resume
    # with another function under the same name went on, and 5 of 20 answers changed)
    checkers: dict[str, str] = {}


class NodeRecord(BaseModel):
    """One node of one item: where it is in the source, what went in and out, what it cost."""

    type: Literal["node"] = "node"
    item: int
    node_id: str
    op: str
    line: int = 0
    status: str = "ok"  # ok | shrunk | skipped | refused | failed
    inputs_digest: str = ""
    outputs: Any = None
    cost: dict[str, float] = {}
    allowance: dict[str, float] = {}
    n: int | None = None
    max_tokens: int | None = None
    started: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None
    reused: int = 0  # verify: candidates scored earlier in the item, reused and not charged


class ItemRecord(BaseModel):
    """The end of one item: its answer, whether it is right, its total cost, and any failures."""

    type: Literal["item"] = "item"
    item: int
    question: str = ""
    gold: str | None = None
    answer: str | None = None
    correct: bool | None = None
    status: str = "ok"  # ok | stopped | failed
    error: str | None = None
    failures: dict[str, str] = {}
    cost: dict[str, float] = {}
    seconds: float = 0.0
    degraded: list[str] = []  # what on_exhaust changed for this item (shrunk or refused nodes, the fallback)
    fields: dict[str, Any] = {}  # the dataset line's other fields (e.g. steps), for breakdowns


class LostRecord(BaseModel):
    """Spend of an attempt whose worker died before finishing the item (a wide run, `--ray`).

    The item runs again elsewhere; what the lost attempt spent (its open
    reservations charged in full) still counts against the pooled budget,
    so `--resume` books it too.
    """

    type: Literal["lost"] = "lost"
    item: int
    worker: str = ""
    shard: int | None = None
    cost: dict[str, float] = {}


class RetryRecord(BaseModel):
    """`--retry-failed`: the item's failed record is withdrawn; its nodes in `kept` are replayed, the rest retired."""

    type: Literal["retry"] = "retry"
    item: int
    kept: list[str] = []


class SpendRecord(BaseModel):
    """`grant`: a spending allowance about to be used; `spend`: what one phase of a node actually cost."""

    type: Literal["grant", "spend"]
    item: int
    node_id: str
    cost: dict[str, float] = {}


class TraceWriter:
    """Appends records to a trace file; `write_item` is atomic per item and flushed."""

    def __init__(self, path: str | Path, header: RunHeader, *, resume: bool = False,
                 expect: tuple[int, int] | None = None) -> None:
        """`expect`: the trace's `stamp` when the run read it to resume; another process that wrote it since (a run
        that was still going, and ended while a wide run's cluster started) is refused, not appended to."""
        self.path = Path(path)
        self._f: IO[str] | None = None
        try:
            if self.path.exists() and not self.path.is_file():  # /dev/null said "cannot write the trace: Invalid argument"
                raise TraceError(f"{self.path}: error: not a regular file; give --trace a file path")
            make_parents(self.path)
            # opened without truncating, and locked before anything is written: a second process on the same
            # trace (a --resume started while the run still goes) mixed its records into it, tore a line in the
            # middle, and the trace could no longer be resumed (QA pass)
            self._f = open(self.path, "a", encoding="utf-8")
            _lock(self._f, self.path)
            if resume and expect is not None and stamp(self.path) != expect:
                raise TraceError(f"{self.path}: error: another ttcl process wrote this trace after this run read it "
                                 "(a run still going as this one started); run this command again to continue "
                                 "from what it holds now")
            if resume and self.path.stat().st_size > 0:
                _drop_torn_tail(self.path)
            if resume and self.path.stat().st_size > 0:  # (a header cut mid-write leaves nothing to resume)
                # Node records left by a crashed attempt belong to no item; the marker retires them.
                self._write([{"type": "resume"}])
            else:
                self._f.truncate(0)
                self._write([header.model_dump(mode="json")])
        except OSError as e:
            self.close()
            raise TraceError(f"{self.path}: error: cannot write the trace: {e.strerror}") from e
        except TraceError:
            self.close()
            raise

    def _write(self, records: list[dict[str, Any]]) -> None:
        assert self._f is not None
        blob = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        self._f.write(blob)
        self._f.flush()
        os.fsync(self._f.fileno())

    def write_item(self, nodes: list[NodeRecord], item: ItemRecord) -> None:
        self._write([*(n.model_dump(mode="json") for n in nodes), item.model_dump(mode="json")])

    def write_raw(self, records: list[dict[str, Any]]) -> None:
        """Records already in trace form (a wide run's workers send them), written and flushed together."""
        self._write(records)

    def write_progress(self, records: list[BaseModel]) -> None:
        """Node, grant and spend records: handed to the OS at once (a killed process loses none), not fsynced."""
        assert self._f is not None
        self._f.write("".join(json.dumps(r.model_dump(mode="json"), ensure_ascii=False, default=str) + "\n"
                              for r in records))
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def has_run(path: Path) -> bool:
    """Whether a trace file holds anything to resume: an empty one, or one whose header line was cut mid-write, is
    what a run killed as it made it leaves."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return b"\n" in head or not head.startswith(b'{"type": "header"')  # another file is said by what reads it


def stamp(path: Path) -> tuple[int, int] | None:
    """The trace file's size and modification time (None: no file), to tell whether it changed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def refuse_if_being_written(path: Path) -> None:
    """Before a run reads a trace to resume it: refused while another process writes it (it holds the lock)."""
    if not has_run(path):
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            _lock(f, path)
    except OSError:
        return  # unreadable or unwritable: said by what opens it next


def _lock(f: IO[str], path: Path) -> None:
    """Hold the trace for this writer alone (released when it is closed, or its process ends)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise TraceError(f"{path}: error: another ttcl process is writing this trace now; let it finish (or stop "
                         "it), then run this command again") from None


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left half-written by a crash, so appends start on a fresh line."""
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(cut)


class Trace(BaseModel):
    """A trace read back: its header, each finished item's item and node records, and the rest of the work.

    `partial` holds the node records of items with no item record yet (a
    run stopped mid-item); `spent` sums every `spend` record and `cut_short`
    every `grant` with no `spend` after it (None: a trace written before these
    records); `lost` lists the attempts a wide run lost with a worker; `retired`
    holds the node records of failed attempts a `retry` replaced (not replayed).
    """

    header: RunHeader
    items: dict[int, ItemRecord] = {}
    nodes: dict[int, list[NodeRecord]] = {}
    lost: list[LostRecord] = []
    partial: dict[int, list[NodeRecord]] = {}
    spent: dict[str, float] | None = None
    cut_short: dict[str, float] | None = None
    retired: list[NodeRecord] = []
    # per item: every `spend` plus every grant cut short, i.e. what the pool was charged for it over its attempts
    charged: dict[int, dict[str, float]] = {}


def read_trace(path: str | Path) -> Trace:
    """Parse a trace. Node records of items with no item record (a run stopped mid-item) go to `partial`."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise TraceError(f"{p}: error: cannot read the trace: {e.strerror}") from e
    if not lines:
        raise TraceError(f"{p}:1: error: the trace is empty (no run header)")
    header: RunHeader | None = None
    items: dict[int, ItemRecord] = {}
    pending: dict[int, dict[str, NodeRecord]] = {}  # item -> node id -> its latest record (a resumed node reruns)
    nodes: dict[int, list[NodeRecord]] = {}
    lost: list[LostRecord] = []
    retired: list[NodeRecord] = []
    spent: dict[str, float] | None = None
    charged: dict[int, dict[str, float]] = {}
    open_grants: dict[tuple[int, str], list[dict[str, float]]] = {}
    item_line: dict[int, int] = {}  # item -> the line of its item record (a retry record lets a second one in)

    def in_range(kind: str, item: int, lineno: int) -> None:
        """A record of an item the run does not have was taken as written (QA pass): an edited or mixed-up trace."""
        n = header.items if header is not None else 0
        if n and not 0 <= item < n:
            raise TraceError(f"{p}:{lineno}: error: {'an' if kind == 'item' else 'a'} {kind} record for item {item}, but the run has {n} items "
                             f"(0..{n - 1}): was the trace edited, or joined with another run's?")

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):  # torn by a crash: everything before it stands
                break
            raise TraceError(f"{p}:{lineno}: error: not valid JSON ({e.msg})") from e
        kind = obj.get("type") if isinstance(obj, dict) else None
        if header is None and kind != "header":
            raise TraceError(f"{p}:{lineno}: error: no run header; is this a ttcl trace?")
        try:
            if kind == "header":
                if header is not None:  # `cat a.jsonl b.jsonl > t.jsonl` went on as one run (QA pass)
                    raise TraceError(f"{p}:{lineno}: error: a second run header: two traces joined into one file?")
                header = RunHeader.model_validate(obj)
                if header.version > TRACE_VERSION:
                    raise TraceError(f"{p}:{lineno}: error: written by a newer ttcl (trace version {header.version}; "
                                     f"this ttcl {__version__} reads version {TRACE_VERSION})")
            elif kind == "resume":
                pass
            elif kind == "node":
                rec = NodeRecord.model_validate(obj)
                in_range(kind, rec.item, lineno)
                pending.setdefault(rec.item, {})[rec.node_id] = rec
            elif kind == "lost":
                lost.append(LostRecord.model_validate(obj))
                in_range(kind, lost[-1].item, lineno)
            elif kind == "retry":  # the failed item runs again: its kept nodes count towards its next record
                rr = RetryRecord.model_validate(obj)
                in_range(kind, rr.item, lineno)
                items.pop(rr.item, None)
                item_line.pop(rr.item, None)
                open_recs = pending.setdefault(rr.item, {})
                for rec in nodes.pop(rr.item, []):
                    if rec.node_id in rr.kept and rec.node_id not in open_recs:
                        open_recs[rec.node_id] = rec
                    else:
                        retired.append(rec)
            elif kind in ("grant", "spend"):
                sp = SpendRecord.model_validate(obj)
                in_range(kind, sp.item, lineno)
                spent = spent if spent is not None else {}
                key = (sp.item, sp.node_id)
                if kind == "grant":
                    open_grants.setdefault(key, []).append(sp.cost)
                else:
                    if open_grants.get(key):
                        open_grants[key].pop(0)
                    mine = charged.setdefault(sp.item, {})
                    for u, v in sp.cost.items():
                        spent[u] = spent.get(u, 0.0) + v
                        mine[u] = mine.get(u, 0.0) + v
            elif kind == "item":
                done = ItemRecord.model_validate(obj)
                in_range(kind, done.item, lineno)
                if done.item in item_line:  # the later record silently replaced the first (QA pass)
                    raise TraceError(f"{p}:{lineno}: error: a second item record for item {done.item} (the first is "
                                     f"on line {item_line[done.item]}) with no retry record between: was the trace "
                                     "edited, or joined with another run's?")
                item_line[done.item] = lineno
                items[done.item] = done
                nodes[done.item] = list(pending.pop(done.item, {}).values())
            else:
                raise TraceError(f"{p}:{lineno}: error: unknown record type {kind!r}")
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            field = f"field {where!r}: " if where else ""
            raise TraceError(f"{p}:{lineno}: error: malformed {kind} record: {field}{first['msg']}") from e
    if header is None:
        raise TraceError(f"{p}:1: error: no run header; is this a ttcl trace?")
    cut_short: dict[str, float] | None = None
    if spent is not None:
        cut_short = {}
        for (item, _), grants in open_grants.items():
            mine = charged.setdefault(item, {})
            for g in grants:
                for u, v in g.items():
                    cut_short[u] = cut_short.get(u, 0.0) + v
                    mine[u] = mine.get(u, 0.0) + v
    partial = {i: list(recs.values()) for i, recs in pending.items() if i not in items}
    return Trace(header=header, items=items, nodes=nodes, partial=partial, spent=spent, cut_short=cut_short, lost=lost,
                 retired=retired, charged=charged)


_WHAT = {"program_hash": "program", "params": "set of params", "models": "set of models", "seed": "seed",
         "dataset_hash": "dataset's content", "budget": "budget", "judge": "judge",
         "answers": "way answers are read", "device": "device", "dtype": "dtype",
         "checkers": "set of --verifier checkers", "model_files": "model weights",
         "tokenizer_files": "tokenizer files or card templates"}


_NONE = object()


def _changed_files(was: dict[str, str], now: dict[str, str]) -> str:
    """Which files of a program changed between two headers: `changed: weighted_best_of_n.ttc`."""
    named = {"": "the program itself"}
    parts = []
    for what, names in (("changed", [n for n in was if n in now and was[n] != now[n]]),
                        ("no longer imported", [n for n in was if n not in now]),
                        ("newly imported", [n for n in now if n not in was])):
        if names:
            parts.append(f"{what}: {', '.join(named.get(n, n) for n in sorted(names))}")
    return "; ".join(parts) or "its files are the same, in other places"


def check_resumable(trace: Trace, header: RunHeader, path: str | Path) -> None:
    """Refuse to resume a trace written by a different run: the results would not mean anything."""
    old = trace.header.model_dump()
    new = header.model_dump()
    # the same weights named by another path (a copy, or `sub/../m` from another folder) are the same models (QA pass)
    same_weights = bool(old.get("model_files")) and old.get("model_files") == new.get("model_files") and \
        set(old["model_files"]) == set(old.get("models") or {}) == set(new.get("models") or {})
    for key in _RESUME_KEYS:
        if key in _WHEN_BOTH and not (old.get(key) and new.get(key)) or key == "models" and same_weights:
            continue
        if old.get(key) != new.get(key):
            was = old.get(key)
            shown = "as written, before 2026-12-06" if key == "answers" and not was else repr(was)
            what = _WHAT[key]
            now = repr(new.get(key))
            if key == "dataset_hash" and new.get("dataset") is None:  # `--input` / `inputs=`
                what, shown = "inputs", "not recorded, before 2026-12-07" if was is None else repr(was)
            if isinstance(was, dict) and isinstance(new.get(key), dict):  # name what changed, not the whole set
                diff = sorted(set(was) | set(new[key]), key=lambda k: (k not in was, k))
                diff = [k for k in diff if was.get(k, _NONE) != new[key].get(k, _NONE)]
                shown = ", ".join(f"{k} {was[k]!r}" if k in was else f"no {k}" for k in diff)
                now = ", ".join(f"{k} {new[key][k]!r}" if k in new[key] else f"no {k}" for k in diff)
            detail = f"{shown}, now {now}"
            if key == "program_hash" and old.get("program_files") and new.get("program_files"):
                detail = _changed_files(old["program_files"], new["program_files"])  # the files, not two hashes
            # a mix of precisions or devices changed answers, and the header said one of them (QA pass)
            same = f"give --{key} {was} as the trace was written, or " if key in ("device", "dtype") else ""
            e = TraceError(
                f"{path}: error: cannot --resume: the {what} {'differ from those' if what in ('inputs', 'model weights', 'tokenizer files or card templates') else 'differs from the one'} this trace was written with "
                f"({detail})\n"
                f"  hint: {same}replace --resume with --overwrite to start this trace over, or use another --trace file"
            )
            e.changed = what
            raise e
