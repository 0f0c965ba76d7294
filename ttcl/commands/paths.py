"""A path option's value: `""` is refused where it would name the current folder.

Typer turns `--trace ''` into `Path("")`, which is `.`: the error then blamed a folder the user never named
(`--trace .: is a directory`), and `--out ''` or `--traces ''` wrote into the current folder without a word
(QA pass). `--dataset` has its own parser (ttcl.commands.run.dataset_path), which names what it accepts.
"""

from __future__ import annotations

from pathlib import Path

import typer


def named_path(text: str) -> Path:
    """A file or folder the user names: anything but an empty (or blank) string."""
    if not text.strip():
        raise typer.BadParameter("an empty path names no file or folder")
    return Path(text)
