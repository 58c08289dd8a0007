"""Atomic artifact writes: a killed job never leaves a half-written file that Snakemake would trust."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# A full disk or quota: the write is refused, not the input; said in one line naming the artifact
FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


@contextlib.contextmanager
def atomic_path(path, *, directory: bool = False):
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    On any failure the temporary is removed and ``path`` is left as it was (absent, or the previous version).
    A full disk or quota (ENOSPC, EDQUOT) while writing is one line naming ``path`` (KinjectError).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_UMASK)  # mkstemp/mkdtemp create private files
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise KinjectError(path, f"{FULL[exc.errno]} while writing it: nothing written, an earlier version kept; "
                           "free space and run again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(path, df: pd.DataFrame, **kwargs) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def read_parquet(path, *, columns: list[str] | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Read a parquet artifact; a missing column, an unreadable file or no rows is a one-line error."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise KinjectError(path, f"not a readable parquet file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in (columns or []) if c not in df.columns]
    if missing:
        raise KinjectError(path, f"missing column(s) {', '.join(missing)}; has {', '.join(df.columns)}")
    if not allow_empty and df.empty:
        raise KinjectError(path, "has no rows")
    return df
