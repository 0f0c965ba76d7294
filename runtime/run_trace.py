"""A run's trace as the run goes, and read back: the hook that writes grants, spend and node records
as they happen, and what `--resume` (and a wide run's driver) rebuilds from a trace: finished
items, the ledger, and the finished nodes of items cut short, to replay.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ttcl.compiler.costmodel import Cost
from ttcl.compiler.dag import DagNode
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.accountant import Accountant, LedgerEntry
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.retry import kept_nodes
from ttcl.runtime.scheduler import MODEL_OPS, ItemResult
from ttcl.runtime.trace import (
    ItemRecord,
    NodeRecord,
    SpendRecord,
    Trace,
    TraceError,
    TraceWriter,
    digest,
    has_run,
    read_trace,
)
from ttcl.runtime.values import from_json
from ttcl.safeio import make_parents


class TraceHook(NodeHook):
    """Writes the trace as the run goes: grants before calls, spend after, node records as nodes finish.

    Each record reaches the OS as soon as it exists, so a killed run keeps
    every finished node (`--resume` replays them) and knows what its lost
    calls may have spent (the pooled budget is charged for them).
    """

    wants_io = True  # it records every node's outputs and the digest of its inputs

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.ledger: Accountant | None = None
        # A writer without `write_progress` (a wide run's shard link) takes an item's node records with its item.
        self.streaming = hasattr(writer, "write_progress")
        self.records: dict[int, list[NodeRecord]] = {}
        # A step's spend and node records, written in one write once the step is whole: a kill between two of them
        # kept one sibling's record and not the other's, and the resumed sibling, reserved beside the other's
        # actual rather than its worst case, drew more samples (QA pass: an answer changed). Grants still go at once.
        self.step: list[BaseModel] | None = None

    def _progress(self, rec: BaseModel) -> None:
        if self.step is not None:
            self.step.append(rec)
        else:
            self.writer.write_progress([rec])

    def _emit(self, rec: NodeRecord) -> None:
        if self.streaming:
            self._progress(rec)
        else:
            self.records.setdefault(rec.item, []).append(rec)

    def before_completions(self, *, step: int, **future: Any) -> None:
        self.step = [] if self.streaming else None

    def after_completions(self, *, step: int, **future: Any) -> None:
        held, self.step = self.step, None
        if held:
            self.writer.write_progress(held)

    def after_item(self, *, item: int, result: ItemResult, **future: Any) -> None:
        self.writer.write_item(self.records.pop(item, []), item_record(result))

    def granted(self, *, item: int, node_id: str, allowance: Any, **future: Any) -> None:
        if self.streaming:
            self.writer.write_progress([SpendRecord(type="grant", item=item, node_id=node_id,
                                                    cost=allowance.worst_case.as_dict())])

    def after_phase(self, *, item: int, node_id: str, allowance: Any, actual: Cost, error: str | None,
                    **future: Any) -> None:
        if self.streaming and allowance.granted and allowance.ticket:
            self._progress(SpendRecord(type="spend", item=item, node_id=node_id, cost=actual.as_dict()))

    def after_node(self, *, item: int, node: DagNode, status: str, actual: Cost, inputs: dict[str, Any],
                   outputs: Any, error: str | None, reason: str | None, started: float, seconds: float,
                   reused: int = 0, **future: Any) -> None:
        allowance: dict[str, float] = {}
        entry = self.ledger.ledger.get((item, node.id)) if self.ledger else None
        if entry is not None:
            allowance = entry.allowance.as_dict()
        self._emit(NodeRecord(
            item=item, node_id=node.id, op=node.op, line=node.span.line, status=status,
            inputs_digest=digest(inputs), outputs=outputs, cost=actual.as_dict(), allowance=allowance,
            n=entry.n if entry else None, max_tokens=entry.max_tokens if entry else None,
            started=round(started, 6), seconds=seconds, error=error, reason=reason, reused=reused,
        ))

    def skip_node(self, *, item: int, node: DagNode, reason: str, **future: Any) -> None:
        self._emit(NodeRecord(item=item, node_id=node.id, op=node.op, line=node.span.line, status="skipped",
                              reason=reason))


def item_record(r: ItemResult) -> ItemRecord:
    return ItemRecord(item=r.index, question=r.question, gold=r.gold, answer=r.answer, correct=r.correct,
                      status=r.status, error=r.error, failures=r.failures, cost=r.cost.as_dict(), seconds=r.cost.seconds,
                      fields=r.fields, degraded=r.degraded)


def result_from_record(rec: ItemRecord) -> ItemResult:
    c = rec.cost
    cost = Cost(calls=c.get("calls", 0), prompt_tokens=c.get("prompt_tokens", 0), gen_tokens=c.get("gen_tokens", 0),
                flops=c.get("flops", 0), seconds=c.get("seconds", 0))
    return ItemResult(index=rec.item, question=rec.question, gold=rec.gold, answer=rec.answer, correct=rec.correct,
                      status=rec.status, error=rec.error, failures=dict(rec.failures), cost=cost, fields=dict(rec.fields),
                      degraded=list(rec.degraded))


def _cost_of(d: dict[str, float]) -> Cost:
    return Cost(**{k: d.get(k, 0.0) for k in ("calls", "prompt_tokens", "gen_tokens", "flops", "seconds")})


def ledger_from_records(nodes: list[NodeRecord]) -> list[LedgerEntry]:
    out = []
    for n in nodes:
        status = {"ok": "charged", "shrunk": "charged", "failed": "charged"}.get(n.status, n.status)
        out.append(LedgerEntry(n.item, n.node_id, _cost_of(n.allowance), _cost_of(n.cost), status=status,
                               n=n.n, max_tokens=n.max_tokens, shrunk=n.status == "shrunk", reason=n.reason or "",
                               reused=n.reused))
    return out


# what turns text into tokens and back; `generation_config.json` is not read by ttcl (it passes its own settings)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "chat_template.jinja",
                   "chat_template.json")


def model_fingerprint(ref: str) -> str | None:
    """A short fingerprint of a local model directory's weights (`config.json`, and each weights file's size, first
    and last MiB: cheap on a model of many GB), or None for what is not a local directory (a server). A resume
    with other weights at the same path went on, and mixed two models' answers and FLOPs (QA pass)."""
    return _fingerprint(ref, lambda p: p.name == "config.json" or p.suffix in (".safetensors", ".bin"))


# what the runtime reads of a model's ttcl_meta.json to build its inputs and read its outputs (the rest, a card's
# figures or training seconds, changes nothing a run does)
META_READ = ("verifier", "input_template", "verdict_prompt", "verdict_yes", "verdict_no", "score", "positive_label",
             "step_end_token", "result_marker", "answer_marker", "direction", "revise_template")


def tokenizer_fingerprint(ref: str) -> str | None:
    """The same for a local model's tokenizer files (TOKENIZER_FILES) and what the runtime reads of its
    ttcl_meta.json (META_READ): another vocabulary, chat template or input template at the same path reads the same
    answers otherwise, and a resume would mix the two (review: a reward model's input_template edited, the resumed
    scores were 0.017 beside 0.718; kept apart from `model_fingerprint` so that traces written before it resume as
    they did); None where there is none."""
    files = _fingerprint(ref, lambda p: p.name in TOKENIZER_FILES)
    meta = _meta_read(ref)
    if meta is None:
        return files
    return hashlib.blake2b(f"{files}\0{meta}".encode(), digest_size=8).hexdigest()


def _meta_read(ref: str) -> str | None:
    import json

    from ttcl.compiler.tokenizer_facts import read_meta
    from ttcl.runtime.backends.base import resolve_ref

    try:
        meta = read_meta(Path(resolve_ref(ref)))
    except TtclRuntimeError:
        return None
    read = {k: meta[k] for k in META_READ if k in meta}
    return json.dumps(read, sort_keys=True) if read else None


def _fingerprint(ref: str, take: Callable[[Path], bool]) -> str | None:
    from ttcl.runtime.backends.base import resolve_ref

    try:
        root = Path(resolve_ref(ref))
        if not root.is_dir():
            return None
        h = hashlib.blake2b(digest_size=8)
        files = sorted(p for p in root.iterdir() if take(p) and p.is_file())
        if not files:
            return None
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.name}\0{size}\0".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read(1 << 20))
        return h.hexdigest()
    except (OSError, ValueError, TtclRuntimeError):
        return None


def check_trace_writable(path: Path) -> None:
    """Before a wide run starts its cluster: the trace can be created where it is named (its folders are made as
    the writer would make them), so that a typo costs a second, not a cluster's start-up."""
    existed = path.exists()
    try:
        make_parents(path)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise TraceError(f"{path}: error: cannot write the trace: {e.strerror}") from e
    if not existed:
        path.unlink(missing_ok=True)


def refuse_existing_trace(path: Path, *, overwrite: bool = False) -> None:
    """A trace that already holds a run is never wiped by accident: resume it, or ask to overwrite it. What is
    not a trace (a dataset named by mistake) is never overwritten, --overwrite or not."""
    if not has_run(path):  # nothing, or a header cut mid-write: nothing to keep
        return
    try:
        done = f"{len(read_trace(path).items)} finished items"
    except TtclRuntimeError:
        raise TraceError(f"{path}: error: the file exists and is not a ttcl trace; --overwrite starts over only a "
                         "trace\n  hint: use another --trace file, or remove this one yourself") from None
    if overwrite:
        return
    raise TraceError(
        f"{path}: error: the trace file already exists ({done}); refusing to overwrite it\n"
        "  hint: add --resume to continue that run, --overwrite to start it over, or use another --trace file"
    )


def _replay_of(keep: list[NodeRecord]) -> list[tuple[str, Any, Cost, str | None]]:
    return [(r.node_id, from_json(r.outputs), _cost_of(r.cost), r.reason if r.status == "shrunk" else None)
            for r in keep]


def restore_from_trace(old: Trace, acc: Accountant, done: dict[int, ItemResult], wanted: set[int],
                       retry: frozenset[int] = frozenset()) -> dict[int, list[tuple[str, Any, Cost, str | None]]]:
    """Book a stopped run back into `acc`: finished items as results, finished nodes of the rest to replay.

    The pool is charged every phase any attempt spent plus every grant a
    kill cut short (its worst case), so kill + `--resume` never spends more
    than a pooled budget; an item's own budget holds what its recorded nodes spent.
    `retry` (`--retry-failed`): failed items run again, their finished nodes replayed like a partial item's.
    """
    replay: dict[int, list[tuple[str, Any, Cost, str | None]]] = {}
    legacy = old.spent is None  # written before grant/spend records: the pool holds finished items only
    cheap_seconds = sum(n.cost.get("seconds", 0.0) for n in old.retired if n.op not in MODEL_OPS)
    for idx, rec in old.items.items():
        recs = old.nodes.get(idx, [])
        cheap_seconds += sum(n.cost.get("seconds", 0.0) for n in recs if n.op not in MODEL_OPS)
        if idx in retry:  # its new attempt's own budget counts the replayed nodes; the pool, all it spent
            keep = kept_nodes(recs)
            acc.restore(idx, ledger_from_records(keep), pool=legacy)
            if legacy:
                acc.restore_pooled(sum((_cost_of(n.cost) for n in recs if all(n is not k for k in keep)), Cost()))
            if keep:
                replay[idx] = _replay_of(keep)
            continue
        done[idx] = result_from_record(rec)
        acc.restore(idx, ledger_from_records(recs), pool=legacy)
    for idx, recs in old.partial.items():
        keep = kept_nodes(recs) if idx in wanted else []
        if keep:
            acc.restore(idx, ledger_from_records(keep), pool=False)
            replay[idx] = _replay_of(keep)
        cheap_seconds += sum(n.cost.get("seconds", 0.0) for n in recs if n.op not in MODEL_OPS)
    if not legacy:
        acc.restore_pooled(_cost_of(old.spent or {}) + _cost_of(old.cut_short or {}) + Cost(seconds=cheap_seconds))
        for idx, charged in old.charged.items():  # what an item's lost attempts cost comes out of its own share
            restored = acc.spent(idx)
            acc.restore_share_use(idx, Cost(**{u: charged.get(u, 0.0) - restored.get(u) for u in
                                               ("calls", "prompt_tokens", "gen_tokens", "flops")}))
    for lost in old.lost:  # attempts a wide run lost with a worker: their spend still counts
        acc.restore_pooled(_cost_of(lost.cost))
    return replay


__all__ = ["TraceHook", "item_record", "ledger_from_records", "refuse_existing_trace", "restore_from_trace",
           "result_from_record"]
