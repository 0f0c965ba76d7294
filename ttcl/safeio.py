"""Bounded reads of files a user names: programs, imports, datasets, model metadata.

A path in a program or on the command line may be a symlink to a device
(`/dev/zero`, `/dev/urandom`: a read that never ends), a FIFO (an open that
blocks forever), or a file far larger than any input ttcl needs. Every read
here opens without blocking, checks that the file is a regular file and no
larger than a limit, and reads at most limit + 1 bytes, so none of these can
hang a check or exhaust memory.

`program_target` adds the rule for `.ttc` files: the file actually read
(after following symlinks) must itself be a `.ttc` file outside `/proc`,
`/sys` and `/dev`, so that a symlink named `x.ttc` cannot make ttcl read,
and then quote in a diagnostic, `/proc/self/environ` or `/etc/passwd`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ttcl.errors import TtclError

MiB = 1 << 20
PROGRAM_LIMIT = 1 * MiB  # a .ttc file; the largest shipped program is about 2 KB
JSON_LIMIT = 16 * MiB  # a model's config.json / ttcl_meta.json / tokenizer.json
_SYSTEM_DIRS = ("/proc", "/sys", "/dev")


class UnsafeRead(TtclError):
    """A file that is not a regular file, or is larger than its limit; `reason` is the user-facing text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _size_text(n: int) -> str:
    if n < MiB:
        return f"{n:,} bytes"
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.2f} MiB"  # 1.19 MiB read "1 MiB, more than 1 MiB"


def read_bounded(path: Path | str, limit: int, *, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Raises UnsafeRead for a FIFO, socket, device or directory, or a file over
    the limit; OSError (not found, permission denied) passes through for the
    caller's own message.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeRead(f"is not a regular file (a {_kind(st.st_mode)}), so ttcl does not read it as a {what}")
        if st.st_size > limit:
            raise UnsafeRead(f"is {_size_text(st.st_size)}, more than the {_size_text(limit)} a {what} may be")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(limit + 1 - got, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:  # a file that grows while read, or a /proc file whose size reads 0
            raise UnsafeRead(f"is more than the {_size_text(limit)} a {what} may be")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def program_target(path: Path) -> Path:
    """The file a `.ttc` path really names; UnsafeRead when that is not a `.ttc` file a program may be.

    A missing file resolves to itself (the read then reports it missing).
    """
    if "\x00" in str(path):
        return path  # the read reports the invalid name
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        raise UnsafeRead("is a symlink that cannot be resolved (a loop?)") from None
    if real.suffix != ".ttc":
        if _is_link(path) or real.name != path.name:
            raise UnsafeRead(f"is a link to `{real.name}`, which is not a .ttc file")
        if is_dir(path):
            raise UnsafeRead("is a directory, not a .ttc file")
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return path  # missing or unreadable: the read reports it
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeRead(f"is not a .ttc file (it is a {_kind(st.st_mode)})")
        raise UnsafeRead("is not a .ttc file: a program's name ends in `.ttc`")
    if any(str(real) == d or str(real).startswith(d + "/") for d in _SYSTEM_DIRS):
        raise UnsafeRead("is a link into a system directory (/proc, /sys or /dev)")
    return real


def _is_link(path: Path) -> bool:
    try:
        return path.is_symlink()
    except (OSError, ValueError):
        return False


def is_within(path: Path, roots: list[Path]) -> bool:
    """Whether the resolved `path` lies inside one of the resolved `roots`."""
    return any(path == r or r in path.parents for r in roots)


def is_dir(path: Path) -> bool:
    """`path.is_dir()`, False (not an exception) for a name too long or otherwise unusable."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """`path.is_file()`, False (not an exception) for a name too long or otherwise unusable."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file (links and other spellings included); a path that does not exist yet
    is compared by where it points."""
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return a.expanduser().absolute() == b.expanduser().absolute()
    except ValueError:
        return False


def where_written(path: Path) -> Path:
    """The file an output path names once its missing folders are made: `nd/../x.jsonl` (no `nd` yet) is
    `x.jsonl`. Checked as spelled, such a path was not found, so every guard (a trace that holds a run, the
    dataset itself) let it through, and the file was overwritten (QA pass). Other paths are kept as written."""
    if ".." not in path.parts:
        return path
    real = os.path.realpath(path)  # symlinks resolved where the path exists, `..` taken as the kernel will
    try:
        return Path(os.path.relpath(real))
    except ValueError:
        return Path(real)


def make_parents(path: Path) -> None:
    """Create the folders above the file `path` (as `mkdir -p`), so every output option (`--trace`, `graph -o`)
    makes them alike. A part of the way that is a file (or a broken symlink) is named: NotADirectoryError
    "`a` is not a directory" (mkdir says only "File exists")."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for part in reversed(path.parents):
            if is_dir(part):
                continue
            if _is_link(part) and not part.exists():
                raise NotADirectoryError(errno.ENOTDIR, f"`{part}` is a broken symlink, not a directory") from None
            raise NotADirectoryError(errno.ENOTDIR, f"`{part}` is not a directory") from None
        raise


def write_whole(path: Path, write: Callable[[str], None]) -> None:
    """Write the file `path` names whole or not at all: `write(name)` fills a temporary file beside it, which is
    then renamed over it, so a kill or a full disk leaves the old file as it was. The file stays what it was (QA
    pass: run as root, `ttcl data -o /dev/null` replaced the device with a file): a symlink is followed and the file
    it points to is written; an existing file keeps its mode, a new one gets 0666 less the umask, as `>` gives; a
    device or FIFO (`/dev/null`, `/dev/full`) is written through, as `>` writes it, never replaced. The temporary
    file is removed however `write` ends (a caller maps SIGTERM to an exception for that: `interrupts.terminating`)."""
    import secrets

    real = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        write(str(real))
        return
    tmp = real.with_name(f".{real.name}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to a new file
    os.close(fd)
    try:
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
        write(str(tmp))
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


# What `from_pretrained(..., use_safetensors=True)` reads: one file, or the index of a sharded save.
LOADABLE_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


def unsafe_model_files(path: Path, *, need_weights: bool = True) -> str | None:
    """Why a local model directory could run code when loaded, or None: pickled weights, or custom
    model code. `ttcl run` refuses such a model before loading it and `ttcl check` refuses it at its
    declaration, with the same words (this function is what both read). Without `need_weights`
    (`ttcl check`, which reads sizes only), a directory with no weights at all is fine: a config
    is enough to bound a model that is not on this machine.

    Unpickling a `pytorch_model.bin` can execute anything the file says, so only safetensors
    weights are loaded; a config that names its own Python classes (`auto_map`,
    trust_remote_code) is refused the same way."""
    try:
        names = [p.name for p in path.iterdir()] if is_dir(path) else []
    except OSError as e:
        return f"cannot list its directory: {e}"
    if not any(n in LOADABLE_SAFETENSORS for n in names):
        pickled = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        stray = sorted(n for n in names if n.endswith(".safetensors"))
        beside = f" beside {', '.join(stray[:3])}, which from_pretrained does not read" if stray else ""
        if pickled:
            return (f"it has only pickled weights ({', '.join(pickled[:3])}){beside}; ttcl loads "
                    "safetensors only, since unpickling can run arbitrary code (convert with "
                    "`model.save_pretrained(dir, safe_serialization=True)` where you trust the file)")
        if need_weights:
            return (f"it has no weights (no {' or '.join(LOADABLE_SAFETENSORS)})"
                    + (f"; found {', '.join(stray[:3])}, which from_pretrained does not read" if stray else ""))
    try:
        config = json.loads(read_bounded(path / "config.json", JSON_LIMIT, what="config.json"))
    except (OSError, UnsafeRead, ValueError) as e:
        return None if not need_weights else f"cannot read config.json: {e}"  # check reports a bad config itself
    if isinstance(config, dict) and config.get("auto_map"):
        return "its config.json names custom model code (auto_map); ttcl never runs a model's own code"
    return None
