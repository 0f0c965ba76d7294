"""The user's own ttcl settings: `$TTCL_CONFIG`, else `~/.config/ttcl/config.toml`.

    allow_remote = ["gpu-box.internal"]   # hosts a program's endpoints may name

Only the user writes this file, so what it allows is trusted, like a
command-line flag; a program can never widen it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ttcl.errors import TtclSemanticError


@dataclass(frozen=True)
class UserConfig:
    allow_remote: list[str] = field(default_factory=list)


def config_path() -> Path:
    env = os.environ.get("TTCL_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ttcl" / "config.toml"


def user_config() -> UserConfig:
    path = config_path()
    if not path.is_file():
        if os.environ.get("TTCL_CONFIG"):  # named by the user: a typo must not silently drop what it allows
            what = "is not a file" if path.exists() else "does not exist"
            raise TtclSemanticError(f"{path}: error: TTCL_CONFIG names this ttcl config, which {what} "
                                    "(unset TTCL_CONFIG to use ~/.config/ttcl/config.toml)")
        return UserConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TtclSemanticError(f"{path}: error: cannot read the ttcl config: {e}") from e
    allow = data.get("allow_remote", [])
    if not isinstance(allow, list) or not all(isinstance(h, str) and h for h in allow):
        raise TtclSemanticError(f"{path}: error: `allow_remote` must be a list of host names")
    unknown = sorted(set(data) - {"allow_remote"})
    if unknown:
        raise TtclSemanticError(f"{path}: error: unknown setting `{unknown[0]}` (known: allow_remote)")
    return UserConfig(allow_remote=list(allow))
