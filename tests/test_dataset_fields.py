"""Datasets as `ttcl run` / `ttcl eval` inputs: extra fields that are not JSON, line splitting, gold answers
(QA pass s36). Every run is on the bundled arith-s, one sample per item, on two or three items."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from evalkit import PROG, cli


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("fields") / "p.ttc"
    p.write_text(PROG)
    return p


ROWS = [{"question": "2 +3", "answer": "#### 5", "steps": 1}, {"question": "7 -4", "answer": "#### 3", "steps": 1}]


def test_a_bytes_column_is_left_out_with_a_note_and_eval_and_traces_work(
        capsys: pytest.CaptureFixture[str], prog: Path, tmp_path: Path) -> None:
    """A Parquet column of bytes crashed every trace and --json writer (exit 70): it is now left out at load,
    with one note naming it, and `ttcl eval` (which always writes traces) runs."""
    datasets = pytest.importorskip("datasets")
    src = tmp_path / "blob.parquet"
    datasets.Dataset.from_list([dict(r, blob=b"\x00\xff") for r in ROWS]).to_parquet(str(src))
    code, out, err = cli(capsys, "eval", str(prog), "--sweep", "n=1", "--dataset", str(src), "--json",
                         "--traces", str(tmp_path / "tr"), "--device", "cpu")
    assert code == 0, err
    assert (f'note: {src}: field "blob" is not a JSON value (it holds bytes) in 2 of 2 items (first: row 1); '
            "it is left out of the items' fields (traces, --json, --by)") in err
    assert "\"blob\"" not in out and "\"steps\": 1" in out
    code, out, err = cli(capsys, "run", str(prog), "--set", "n=1", "--dataset", str(src), "--json",
                         "--trace", str(tmp_path / "t.jsonl"), "--device", "cpu")
    assert code == 0, err
    assert [r["fields"] for r in json.loads(out)["results"]] == [{"steps": 1}, {"steps": 1}]


def test_jsonl_fields_that_are_not_json_are_left_out(capsys: pytest.CaptureFixture[str], prog: Path,
                                                     tmp_path: Path) -> None:
    """`json.loads` accepts NaN and a lone surrogate escape; neither can be written back as JSON (UTF-8)."""
    src = tmp_path / "d.jsonl"
    src.write_text('{"question": "2 +3", "answer": "5", "score": NaN, "note": "\\ud800", "ok": [1, "a"]}\n'
                   '{"question": "7 -4", "answer": "3", "score": 1.5, "note": "x", "ok": {"k": null}}\n')
    code, out, err = cli(capsys, "run", str(prog), "--set", "n=1", "--dataset", str(src), "--json",
                         "--trace", str(tmp_path / "t.jsonl"), "--device", "cpu")
    assert code == 0, err
    assert 'field "score" is not a JSON value (it holds a non-finite number (nan)) in 1 of 2 items (first: line 1)' in err
    assert 'field "note" is not a JSON value (it holds text that is not valid Unicode) in 1 of 2 items' in err
    assert [r["fields"] for r in json.loads(out)["results"]] == [
        {"ok": [1, "a"]}, {"score": 1.5, "note": "x", "ok": {"k": None}}]


def test_jsonl_lines_end_at_newline_only(tmp_path: Path) -> None:
    """U+2028, U+2029, U+0085, \\x0b, \\x0c and \\x1c-\\x1e are legal raw in a JSON string (`json.dumps(...,
    ensure_ascii=False)` writes them so); `str.splitlines()` broke the line there and the item was refused."""
    from ttcl.runtime.dataset import DatasetError, load_dataset

    seps = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"
    src = tmp_path / "d.jsonl"
    lines = [json.dumps({"question": f"1 +{i}", "answer": str(i + 1), "note": f"a{c}b"}, ensure_ascii=False)
             for i, c in enumerate(seps)]
    src.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    items = load_dataset(src)
    assert [it.extra["note"] for it in items] == [f"a{c}b" for c in seps]
    assert [it.line for it in items] == list(range(1, len(seps) + 1))
    # the line number of an error is the one `wc -l` and `sed -n` count, whatever the lines before held
    src.write_text("\n".join(lines) + '\n{"question": "x", "note": "open\n', encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    assert str(e.value) == f"{src}:9: error: not valid JSON (Unterminated string starting at column 27)"


def _items(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_by_value_all_is_its_own_bin_not_the_overall_row(capsys: pytest.CaptureFixture[str], prog: Path,
                                                         tmp_path: Path) -> None:
    """A field value "all" was read as the overall row: its group vanished and the total was printed twice."""
    src = _items(tmp_path / "d.jsonl", [dict(r, group=g) for r, g in zip(ROWS + ROWS[:1], ["all", "rest", "all"],
                                                                         strict=True)])
    code, out, err = cli(capsys, "run", str(prog), "--set", "n=1", "--dataset", str(src), "--by", "group",
                         "--json", "--device", "cpu")
    assert code == 0, err
    bins = json.loads(out)["by"]["bins"]
    assert [(b["bin"], b["items"]) for b in bins] == [('"all"', 2), ("rest", 1), ("all", 3)]
    code, out, err = cli(capsys, "eval", str(prog), "--sweep", "n=1", "--dataset", str(src), "--by", "group",
                         "--json", "--traces", str(tmp_path / "tr"), "--device", "cpu")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["bins"] == ['"all"', "rest", "all"]
    assert [(b["bin"], b["items"]) for b in rep["rows"][0]["bins"]] == [('"all"', 2), ("rest", 1), ("all", 3)]


def test_by_values_of_mixed_types_are_distinct_bins(capsys: pytest.CaptureFixture[str], prog: Path,
                                                    tmp_path: Path) -> None:
    """"3" and 3 made two bins both shown as 3; true and 1 made one bin (Python's True == 1). Bins are keyed by
    the JSON value (3 and 3.0 are one number) and no two labels read the same."""
    steps = [1, True, 3, "3", 3.0]
    src = _items(tmp_path / "d.jsonl", [dict(ROWS[i % 2], steps=s) for i, s in enumerate(steps)])
    code, out, err = cli(capsys, "run", str(prog), "--set", "n=1", "--dataset", str(src), "--by", "steps",
                         "--device", "cpu")
    assert code == 0, err
    shown = [line.split(":")[0] for line in out.splitlines() if ", FLOPs/item " in line]
    assert shown == ["steps = 1", "steps = true", "steps = 3", 'steps = "3"', "all"]
    assert [line.split(" over ")[1].split(",")[0] for line in out.splitlines() if ", FLOPs/item " in line] == [
        "1 item", "1 item", "2 items", "1 item", "5 items"]


@pytest.mark.parametrize("n", [2, 4])
def test_allocation_intervals_follow_the_interval_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        n: int) -> None:
    """The allocation table used a plain percentile bootstrap: [1.000, 1.000] on one report item, and a
    "3.19x saving [3.19, 3.19]". Its accuracies now take docs/eval.md's interval (Wilson under 30 items), with
    `interval`; the saving has no interval on one item, and a note says what it is worth on few."""
    from ttcl.runtime.tasks.arith import iter_jsonl, make_problems

    src = tmp_path / "d.jsonl"
    src.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(n, [1, 3], seed=5))))
    code, out, err = cli(capsys, "eval", "ttcl:pool", "--pool", "n=2", "--dataset", str(src), "--by", "steps",
                         "--allocate", "field", "--json", "--traces", str(tmp_path / "tr"), "--device", "cpu")
    assert code == 0, err
    a = json.loads(out)["allocation"]
    assert a["report_items"] == n // 2
    for row in a["curve"] + a["uniform"]:
        assert row["interval"] in ("wilson", "wilson-mean") and row["lo"] < row["hi"], row
    if n == 2:
        assert a["saving_lo"] is None and a["saving_hi"] is None
        assert all(r["vs_uniform_lo"] is None for r in a["curve"])
        assert a["note"].startswith("the report half has 1 item: the savings have no interval")
    else:
        assert a["saving_hi"] is not None
        assert a["note"].startswith("the report half has 2 items, fewer than 30: the saving intervals are percentile")


@pytest.mark.parametrize(("answer", "got"), [("NaN", "nan (not JSON)"), ("Infinity", "inf (not JSON)"),
                                             ("-Infinity", "-inf (not JSON)"), ("true", "bool"), ("false", "bool")])
def test_a_gold_answer_that_is_not_a_string_or_number_is_refused(capsys: pytest.CaptureFixture[str], prog: Path,
                                                                 tmp_path: Path, answer: str, got: str) -> None:
    """NaN and Infinity (json.loads reads them) became gold "nan"/"inf", and true (an int to Python) became
    "true": each item was silently scored wrong."""
    src = tmp_path / "d.jsonl"
    src.write_text('{"question": "2 +3", "answer": "5"}\n{"question": "1 +1", "answer": ' + answer + "}\n")
    code, out, err = cli(capsys, "run", str(prog), "--dataset", str(src), "--device", "cpu")
    assert code == 2 and out == ""
    assert err.strip() == f'{src}:2: error: field "answer" must be a string or a number, got {got}'


def test_a_misspelt_field_name_for_the_answer_is_an_error(capsys: pytest.CaptureFixture[str], prog: Path,
                                                          tmp_path: Path) -> None:
    """`--field anwser=solution` kept the gold answers as an extra field `anwser`: `ttcl run` printed
    "accuracy: n/a (no gold answers)" and exited 0. (A misspelt `question` was caught already.)"""
    src = _items(tmp_path / "d.jsonl", [{"problem": "2 +3", "solution": "#### 5"}])
    code, out, err = cli(capsys, "run", str(prog), "--dataset", str(src), "--field", "question=problem",
                         "--field", "anwser=solution", "--device", "cpu")
    assert code == 2 and out == ""
    assert err.strip() == (f'{src}:1: error: no field "answer": --field anwser=solution: did you mean `answer`? '
                           "(fields present: anwser, question)")
    code, out, err = cli(capsys, "run", str(prog), "--dataset", str(src), "--field", "qestion=problem",
                         "--field", "answer=solution", "--device", "cpu")
    assert code == 2 and "--field qestion=problem: did you mean `question`?" in err


def test_pretrain_flops_for_a_model_not_in_the_eval_is_an_error(capsys: pytest.CaptureFixture[str], prog: Path,
                                                                tmp_path: Path) -> None:
    """`--pretrain-flops ttcl:arith-q=5e12` in an eval of arith-s and arith-m was ignored without a word, and in a
    --sweep (no table reads it) it was accepted too."""
    src = _items(tmp_path / "d.jsonl", ROWS)
    code, out, err = cli(capsys, "eval", "ttcl:pool", "--pool", "n=2", "--dataset", str(src), "--greedy",
                         "policy=ttcl:arith-m", "--pretrain-flops", "ttcl:arith-q=5e12", "--device", "cpu")
    assert (code, out) == (2, "")
    assert err.strip() == "error: --pretrain-flops: arith-q is not a model of this eval (its models: arith-s, arith-m)"
    code, out, err = cli(capsys, "eval", str(prog), "--sweep", "n=1", "--dataset", str(src),
                         "--pretrain-flops", "ttcl:arith-s=5e12", "--device", "cpu")
    assert (code, out) == (2, "")
    assert "only a --pool report's total-compute table reads pretraining FLOPs" in err


LINE = json.dumps(ROWS[0])


@pytest.mark.parametrize(("name", "data", "first", "hint"), [
    ("d.csv", b"question,answer\n2 +3,5\n", "not valid JSON (Expecting value at column 1)",
     "CSV is not supported: convert it to JSONL (one JSON object per line) or Parquet"),
    ("d.jsonl.gz", __import__("gzip").compress(LINE.encode()), "not valid UTF-8",
     "a gzip-compressed file: decompress it first (ttcl reads JSONL as plain text)"),
    ("d.json", f"[{LINE}]".encode(), 'expected a JSON object with a "question" field, got list',
     "this looks like a JSON array; ttcl reads JSONL, one object per line (jq -c '.[]' FILE > FILE.jsonl)"),
    ("d.jsonl", b"PAR1\x15\x04\xff", "not valid UTF-8",
     "a Parquet file: name it FILE.parquet (ttcl reads a Parquet file by its extension)"),
])
def test_a_file_of_another_format_gets_a_hint(tmp_path: Path, name: str, data: bytes, first: str, hint: str) -> None:
    """CSV, gzip, a JSON array and a misnamed Parquet file got a bare "not valid JSON"/"not valid UTF-8"."""
    from ttcl.runtime.dataset import DatasetError, load_dataset

    src = tmp_path / name
    src.write_bytes(data)
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    assert str(e.value) == f"{src}:1: error: {first}\n  hint: {hint}"


def test_a_fifo_points_to_stdin_and_an_arrow_ipc_file_is_read(tmp_path: Path) -> None:
    """A pipe given by name is refused (an open could block); the message now names `--dataset -`. An Arrow IPC
    file (`pyarrow.ipc.new_file`, Feather v2) failed with "Expected to read 1330795073 metadata bytes"."""
    import os

    from ttcl.runtime.dataset import DatasetError, load_dataset

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="\n  hint: to read a pipe, give --dataset - with the data on standard input"):
        load_dataset(fifo)
    pa = pytest.importorskip("pyarrow")
    src = tmp_path / "d.arrow"
    table = pa.Table.from_pylist(ROWS)
    with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert [(it.question, it.gold, it.extra) for it in load_dataset(src)] == [("2 +3", "5", {"steps": 1}),
                                                                             ("7 -4", "3", {"steps": 1})]


def test_a_dataset_dict_without_a_default_split_hints_at_its_directory(tmp_path: Path) -> None:
    """"no a `test` or `validation` split", with a hint for the hf:NAME syntax, which a directory cannot use."""
    datasets = pytest.importorskip("datasets")
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.dataset_hf import HFDatasetError

    d = datasets.Dataset.from_list(ROWS)
    datasets.DatasetDict({"train": d, "dev": d}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(HFDatasetError) as e:
        load_dataset(tmp_path / "dd")
    assert str(e.value) == (f"{tmp_path / 'dd'}: error: no `test` or `validation` split (splits: train, dev)\n"
                            f"  hint: name one, e.g. {tmp_path / 'dd' / 'train'} (the split's own directory)")
    assert len(load_dataset(tmp_path / "dd" / "train")) == 2


def test_a_table_row_is_named_row_n_from_1(capsys: pytest.CaptureFixture[str], prog: Path, tmp_path: Path) -> None:
    """Parquet rows were "FILE row:0:" in the loader's errors and "FILE:2:" (0-based, in the form of a JSONL
    line) in eval's missing-answer error; both are now "FILE row N", counted from 1."""
    datasets = pytest.importorskip("datasets")
    from ttcl.runtime.dataset import DatasetError, load_dataset

    src = tmp_path / "d.parquet"
    datasets.Dataset.from_list([*ROWS, {"question": "", "answer": "1", "steps": 2}]).to_parquet(str(src))
    with pytest.raises(DatasetError) as e:
        load_dataset(src)
    assert str(e.value) == f'{src} row 3: error: field "question" must be a non-empty string'
    datasets.Dataset.from_list([*ROWS, {"question": "1 +1", "answer": None, "steps": 2}]).to_parquet(str(src))
    code, out, err = cli(capsys, "eval", str(prog), "--sweep", "n=1", "--dataset", str(src), "--device", "cpu")
    assert code == 2 and err.splitlines()[-1].startswith(f'{src} row 3: error: the item has no "answer"'), err


def test_an_overlaid_run_just_outside_the_pool_range_reads_its_end_point() -> None:
    """Best-of-N at n = 1 cost 0.4% less than its own pool's k = 1 (sampling noise in lengths), so the natural
    equal-compute check read "-" in every cell. Within 5% of an end point the end point is read, and how far
    outside the run is, is kept (`outside`) and shown; farther out it still reads "-", with the distance."""
    from ttcl.commands.eval_report import overlay_points

    curve = [{"series": "p", "signal": "maj", "bin": "all", "flops": f, "accuracy": a} for f, a in ((1e6, 0.5), (4e6, 0.75))]
    runs = [{"series": "r", "config": {"n": n}, "bins": [{"bin": "all", "items": 2, "accuracy": 0.5, "lo": 0.1,
                                                          "hi": 0.9, "flops": f}]}
            for n, f in ((1, 0.996e6), (2, 2e6), (4, 4.0002e6), (0, 0.5e6))]
    reads = [q for q in overlay_points({"bins": ["all"], "by": None, "curves": curve}, [{"rows": runs}])
             if q["signal"] is not None]
    assert [q["pool_accuracy"] for q in reads[:3]] == [0.5, 0.625, 0.75] and math.isnan(reads[3]["pool_accuracy"])
    assert [round(q["outside"], 6) for q in reads] == [-0.004, 0.0, 0.00005, -0.5]


def test_reading_a_parquet_file_leaves_nothing_in_the_hf_cache(tmp_path: Path) -> None:
    """`Dataset.from_parquet` wrote a converted copy of every file read into $HF_HOME/datasets/parquet/: a
    read-only input left disk state behind (and a read-only or full home could break the read)."""
    import os
    import subprocess
    import sys

    datasets = pytest.importorskip("datasets")
    src = tmp_path / "d.parquet"
    datasets.Dataset.from_list(ROWS).to_parquet(str(src))
    home = tmp_path / "hf"
    code = f"from ttcl.runtime.dataset import load_dataset; print([it.gold for it in load_dataset({str(src)!r})])"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HOME": str(home), "HF_DATASETS_CACHE": str(home / "datasets")})
    assert p.returncode == 0 and p.stdout.strip() == "['5', '3']", p.stderr
    assert not any(home.rglob("*")), sorted(home.rglob("*"))[:5]


def test_a_dataset_in_proc_or_sys_is_refused(tmp_path: Path) -> None:
    """`/proc/self/environ` was read as a dataset (refused only as bad JSON); programs were fenced already."""
    from ttcl.runtime.dataset import DatasetError, load_dataset

    link = tmp_path / "d.jsonl"
    link.symlink_to("/proc/self/environ")
    for src in (Path("/proc/self/environ"), link):
        with pytest.raises(DatasetError) as e:
            load_dataset(src)
        assert str(e.value) == f"{src}: error: is in a system directory (/proc or /sys), not a dataset"


@pytest.mark.parametrize("command", ["run", "eval"])
def test_an_empty_dataset_path_is_refused_not_read_as_the_current_folder(capsys: pytest.CaptureFixture[str],
                                                                        prog: Path, command: str) -> None:
    """`--dataset ""` became `Path("")`, the current folder, and was reported as "." (left alone in session 37)."""
    code, out, err = cli(capsys, command, str(prog), "--dataset", "")
    assert code == 2 and "Invalid value for '--dataset': an empty path" in err and "." + ":" not in err, err
