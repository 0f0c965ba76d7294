"""Datasets, answer extraction and traces: exact messages and round trips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ttcl.runtime.dataset import DatasetError, load_dataset, single_item
from ttcl.runtime.extract import ExtractError, gold_answer, make_extractor, normalize_answer
from ttcl.runtime.trace import (
    ItemRecord,
    NodeRecord,
    RunHeader,
    TraceError,
    TraceWriter,
    check_resumable,
    read_trace,
)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("1,234", "1234"), ("1,234.0", "1234"), ("$12", "12"), ("-5", "-5"), ("0.50", "0.5"), ("007", "7"), ("-0", "0"), ("42.", "42"), (" abc ", "abc"), ("", None),
     ("19,26", "19,26"), ("31,40,7", "31,40,7"), ("12,345,678", "12345678"), ("1,2345", "1,2345")],
)
def test_normalize_answer(raw: str, norm: str | None) -> None:
    assert normalize_answer(raw) == norm


def test_extractors() -> None:
    assert make_extractor("####")("3+4=7\n#### 7\nmore") == "7"
    assert make_extractor("boxed")(r"so \boxed{\frac{1}{2}} and \boxed{12}") == "12"
    assert make_extractor("boxed")(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert make_extractor("last_number")("a 3 then 1,250.") == "1250"
    assert make_extractor(r"answer: (\d+)")("answer: 4, answer: 5") == "5"
    assert make_extractor(None)("no marker 17 then 18") == "18"
    assert make_extractor(None, lambda t: t.split("=")[-1])("1+1=2") == "2"
    assert make_extractor("####")("nothing here") is None
    with pytest.raises(ExtractError, match="must have exactly one group, it has 0"):
        make_extractor(r"\d+")
    with pytest.raises(ExtractError, match="is not a valid regex"):
        make_extractor(r"(\d+")


def test_gold_answer() -> None:
    assert gold_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert gold_answer(72) == "72"
    assert gold_answer(72.0) == "72"
    assert gold_answer("1,000") == "1000"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "d.jsonl"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_dataset_gsm8k_style(tmp_path: Path) -> None:
    p = _write(tmp_path, '{"question": "1 +2", "answer": "1+2=3\\n#### 3"}\n\n{"question": "5 *2", "answer": 10, "steps": 1}\n')
    items = load_dataset(p)
    assert [(i.index, i.question, i.gold, i.line) for i in items] == [(0, "1 +2", "3", 1), (1, "5 *2", "10", 3)]
    assert items[1].extra == {"steps": 1}
    assert len(load_dataset(p, limit=1)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "a"}\n{"question": "b"\n', "d.jsonl:2: error: not valid JSON (Expecting ',' delimiter at column 17)"),
        ('["a"]\n', 'd.jsonl:1: error: expected a JSON object with a "question" field, got list\n  hint: this looks '
                    "like a JSON array; ttcl reads JSONL, one object per line (jq -c '.[]' FILE > FILE.jsonl)"),
        ('{"q": "a", "answer": 1}\n', 'd.jsonl:1: error: missing field "question" (fields present: answer, q)'),
        ('{"question": ""}\n', 'd.jsonl:1: error: field "question" must be a non-empty string'),
        ('{"question": "a", "answer": [1]}\n', 'd.jsonl:1: error: field "answer" must be a string or a number, got list'),
        ('{"question": "a", "answer": "x ####"}\n', 'd.jsonl:1: error: field "answer" has nothing after "####"'),
        ('{"question": "a", "answer": " "}\n',
         'd.jsonl:1: error: field "answer" is empty (leave it out for an item without a gold answer)'),
        ('{"question": "1 +1 \\ud800"}\n',
         'd.jsonl:1: error: field "question" is not valid Unicode: a lone surrogate U+D800 at character 6'),
        ("\n\n", "d.jsonl: error: the dataset has no items"),
    ],
)
def test_bad_dataset_lines(tmp_path: Path, text: str, message: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(DatasetError) as e:
        load_dataset(p)
    assert str(e.value) == f"{tmp_path}/{message}"


def test_a_field_that_renames_the_question_away_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path, '{"question": "1 +2", "answer": "3"}\n')
    with pytest.raises(DatasetError) as e:
        load_dataset(p, fields={"nope": "question"})
    assert str(e.value) == (f'{tmp_path}/d.jsonl:1: error: missing field "question" (--field nope=question reads it '
                            'as `nope`) (fields present: answer, nope)')
    p.write_text('{"problem": "1 +2", "answer": "3"}\n')
    with pytest.raises(DatasetError, match=r"\(--field qestion=problem: did you mean `question`\?\)"):
        load_dataset(p, fields={"qestion": "problem"})


def test_missing_dataset_and_empty_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.jsonl: error: dataset file not found"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="^--input: the input text is empty"):
        single_item("  ")
    with pytest.raises(DatasetError, match="^--input: the input text is not valid Unicode: a lone surrogate U"):
        single_item("1 +1 \udcff")  # a byte that is not UTF-8 on the command line, as Python decodes argv


def _header(**kw: object) -> RunHeader:
    base = {"program": "p.ttc", "program_hash": "abc", "params": {"n": 4}, "models": {"policy": "ttcl:arith-s"}, "seed": 0}
    base.update(kw)
    return RunHeader(**base)


def test_trace_round_trip_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, _header()) as w:
        w.write_item([NodeRecord(item=0, node_id="drafts", op="sample", line=7)], ItemRecord(item=0, answer="3"))
    # a crash mid-item leaves finished nodes of an unfinished item, and a torn line
    with open(path, "a") as f:
        f.write(json.dumps(NodeRecord(item=1, node_id="drafts", op="sample").model_dump()) + "\n")
        f.write('{"type": "item", "ite')
    t = read_trace(path)
    assert list(t.items) == [0]
    assert [n.node_id for n in t.nodes[0]] == ["drafts"]
    assert [n.node_id for n in t.partial[1]] == ["drafts"]  # kept: --resume replays it
    with TraceWriter(path, _header(), resume=True) as w:
        w.write_progress([NodeRecord(item=1, node_id="drafts", op="sample", status="failed"),
                          NodeRecord(item=1, node_id="vote", op="vote")])
        w.write_item([], ItemRecord(item=1, answer="5"))
    t = read_trace(path)
    assert sorted(t.items) == [0, 1] and t.partial == {}
    # a node run again after the resume replaces its earlier record
    assert [(n.node_id, n.status) for n in t.nodes[1]] == [("drafts", "failed"), ("vote", "ok")]


def test_resume_refuses_another_run(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    TraceWriter(path, _header()).close()
    t = read_trace(path)
    check_resumable(t, _header(), path)
    with pytest.raises(TraceError, match=r"cannot --resume: the seed differs from the one this trace was written with \(0, now 1\)"):
        check_resumable(t, _header(seed=1), path)
    with pytest.raises(TraceError, match=r"cannot --resume: the set of params differs from the one this trace was written with"):
        check_resumable(t, _header(params={"n": 8}), path)


def test_bad_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"type": "node", "item": 0, "node_id": "a", "op": "x"}\n')
    with pytest.raises(TraceError, match="t.jsonl:1: error: no run header; is this a ttcl trace"):
        read_trace(path)
    header = _header().model_dump() | {"answers": None}
    path.write_text(json.dumps(header) + "\n")
    with pytest.raises(TraceError, match="t.jsonl:1: error: malformed header record: field 'answers': Input should be a valid string"):
        read_trace(path)
    # a future format, and two traces joined into one file, went on without a word (QA pass)
    path.write_text(json.dumps(_header().model_dump() | {"version": 2}) + "\n")
    with pytest.raises(TraceError, match=r"t.jsonl:1: error: written by a newer ttcl \(trace version 2; this ttcl "):
        read_trace(path)
    path.write_text((json.dumps(_header().model_dump()) + "\n") * 2)
    with pytest.raises(TraceError, match="t.jsonl:2: error: a second run header: two traces joined into one file"):
        read_trace(path)


def test_a_record_of_an_item_the_run_lacks_or_a_second_item_record_is_refused(tmp_path: Path) -> None:
    """An item record for item 9 of a 4-item run, or a second record of item 0, was taken as written: a resume
    counted the later record and eval read it (QA pass)."""
    path = tmp_path / "t.jsonl"
    head = json.dumps(_header(items=4).model_dump()) + "\n"
    item = ItemRecord(item=0, answer="3").model_dump()
    path.write_text(head + json.dumps(item) + "\n" + json.dumps(item | {"answer": "4"}) + "\n")
    with pytest.raises(TraceError, match=r"t.jsonl:3: error: a second item record for item 0 \(the first is on line "
                                         r"2\) with no retry record between: was the trace edited"):
        read_trace(path)
    for kind, rec in (("an item", item | {"item": 9}), ("a node", NodeRecord(item=4, node_id="a", op="x").model_dump()),
                      ("a retry", {"type": "retry", "item": -1}), ("a spend", {"type": "spend", "item": 7, "node_id": "a"})):
        path.write_text(head + json.dumps(rec) + "\n")
        with pytest.raises(TraceError, match=rf"t.jsonl:2: error: {kind} record for item -?\d, but the run has 4 items "
                                             r"\(0..3\)"):
            read_trace(path)
    # a retry record withdraws the first: the second is the item's record
    path.write_text(head + json.dumps(item | {"status": "failed"}) + "\n" + json.dumps({"type": "retry", "item": 0})
                    + "\n" + json.dumps(item | {"answer": "4"}) + "\n")
    assert read_trace(path).items[0].answer == "4"


def test_a_trace_under_a_file_names_that_file(tmp_path: Path) -> None:
    """`--trace afile/t.jsonl` said "File exists" (QA s36 #11): the part of the path that is a file is named, for
    a plain run's writer and for a wide run's check before its cluster starts; missing folders are made."""
    from ttcl.runtime.run_trace import check_trace_writable

    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "t.jsonl", afile / "sub" / "t.jsonl"):
        with pytest.raises(TraceError) as e:
            TraceWriter(path, _header())
        assert str(e.value) == f"{path}: error: cannot write the trace: `{afile}` is not a directory"
        with pytest.raises(TraceError) as e:
            check_trace_writable(path)
        assert str(e.value) == f"{path}: error: cannot write the trace: `{afile}` is not a directory"
    assert afile.read_text() == "x"
    TraceWriter(tmp_path / "new" / "sub" / "t.jsonl", _header()).close()
    assert read_trace(tmp_path / "new" / "sub" / "t.jsonl").items == {}


def test_a_trace_written_after_it_was_read_is_not_appended_to(tmp_path: Path) -> None:
    """A wide --resume read the trace while a plain run still wrote it, and once that run ended and let go of its
    lock, appended a second copy of its items (pooled spend 9.2e8 under a pool of 8e8; QA pass). The writer now
    refuses a trace that changed since the run read it, and a run refuses to read one another process holds."""
    from ttcl.runtime.trace import TraceWriter, refuse_if_being_written, stamp

    path = tmp_path / "t.jsonl"
    TraceWriter(path, _header()).close()
    seen = stamp(path)
    time.sleep(0.01)
    with open(path, "a") as f:
        f.write('{"type": "resume"}\n')  # what the other run wrote after this one read the trace
    with pytest.raises(TraceError, match="another ttcl process wrote this trace after this run read it"):
        TraceWriter(path, _header(), resume=True, expect=seen)
    TraceWriter(path, _header(), resume=True, expect=stamp(path)).close()  # unchanged since read: resumed
    holder = TraceWriter(path, _header(), resume=True)
    try:
        with pytest.raises(TraceError, match="another ttcl process is writing this trace now"):
            refuse_if_being_written(path)
    finally:
        holder.close()
    refuse_if_being_written(path)
