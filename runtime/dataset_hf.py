"""Hugging Face `datasets` from local disk, never the network (the `datasets` extra).

`DIR` is a dataset written by `save_to_disk` (a DatasetDict picks its `test`
split, else `validation`, else its only split); `FILE.parquet` and
`FILE.arrow` (the Arrow stream format `save_to_disk` writes, or an Arrow IPC
file, Feather v2) are read directly; `hf:NAME[:SPLIT]` (default split `test`)
loads a dataset already in the local Hugging Face cache with the hub off
(`HF_DATASETS_OFFLINE=1`, `HF_HUB_OFFLINE=1`), so a missing one is an error,
not a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ttcl.errors import TtclRuntimeError

MAX_ROWS = 10_000_000


class HFDatasetError(TtclRuntimeError):
    """A local Hugging Face dataset that cannot be read."""


def _datasets() -> Any:
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # set before the import: the library reads it once
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets
    except ModuleNotFoundError:
        raise HFDatasetError('reading Hugging Face datasets needs the `datasets` package: pip install "ttcl[datasets]"') from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read schema" lines: our error says it
    return datasets


def _pick_split(dd: Any, shown: str, split: str | None = None) -> Any:
    names = list(dd.keys())
    for name in ([split] if split else ["test", "validation"]):
        if name in names:
            return dd[name]
    if not split and len(names) == 1:
        return dd[names[0]]
    want = f"split {split!r}" if split else "`test` or `validation` split"
    one = names[0] if names else "train"
    hint = f"hf:NAME:{one}" if shown.startswith("hf:") else f"{Path(shown) / one} (the split's own directory)"
    raise HFDatasetError(f"{shown}: error: no {want} (splits: {', '.join(names) or 'none'})"
                         + ("" if split else f"\n  hint: name one, e.g. {hint}"))


def _arrow_ipc_file(source: str) -> bool:
    """An Arrow IPC *file* starts with the magic "ARROW1"; the stream format has no magic."""
    try:
        with open(source, "rb") as f:
            return f.read(6) == b"ARROW1"
    except OSError:
        return False


def load_hf(source: str, limit: int | None) -> list[dict[str, Any]]:
    """The rows of a local dataset, as plain dicts (at most `limit`)."""
    ds_lib = _datasets()
    try:
        if source.startswith("hf:"):
            name, _, split = source[3:].partition(":")
            if not name:
                raise HFDatasetError(f"{source}: error: expected hf:NAME or hf:NAME:SPLIT")
            data = _pick_split(ds_lib.load_dataset(name), source, split or None)
        elif source.endswith(".parquet"):  # read in memory: `Dataset.from_parquet` left a converted copy in the cache
            import pyarrow.parquet

            data = ds_lib.Dataset(pyarrow.parquet.read_table(source))
        elif source.endswith(".arrow") and _arrow_ipc_file(source):  # pyarrow's `ipc.new_file`, Feather v2
            import pyarrow.ipc

            with pyarrow.ipc.open_file(source) as reader:
                data = ds_lib.Dataset(reader.read_all())
        elif source.endswith(".arrow"):  # the stream format `save_to_disk` writes
            data = ds_lib.Dataset.from_file(source)
        else:
            if not (Path(source) / "dataset_info.json").exists() and not (Path(source) / "dataset_dict.json").exists():
                raise HFDatasetError(f"{source}: error: is a directory but not a dataset saved with `save_to_disk` "
                                     "(no dataset_info.json or dataset_dict.json)")
            data = ds_lib.load_from_disk(source)
            if isinstance(data, ds_lib.DatasetDict):
                data = _pick_split(data, source)
    except HFDatasetError:
        raise
    except FileNotFoundError as e:
        raise HFDatasetError(f"{source}: error: not found locally ({e}); ttcl never downloads datasets") from None
    except Exception as e:  # the library raises many types for a bad or absent dataset; each is the user's input
        msg = " ".join(str(e).split()).removeprefix(f"Could not open Parquet input source '{source}': ")[:300]
        raise HFDatasetError(f"{source}: error: cannot read it as a local Hugging Face dataset: {msg}") from None
    n = len(data) if limit is None else min(limit, len(data))
    if n > MAX_ROWS:
        raise HFDatasetError(f"{source}: error: {len(data):,} rows, more than {MAX_ROWS:,}; use --limit")
    return [dict(data[i]) for i in range(n)]


__all__ = ["HFDatasetError", "load_hf"]
