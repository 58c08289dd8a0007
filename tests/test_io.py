"""Atomic artifact writes: a full disk mid-write leaves the old artifact (or none) and no temporary behind."""

import errno
from pathlib import Path

import pandas as pd
import pytest

from kinject import io
from kinject.errors import KinjectError


def disk_full_after(monkeypatch, owner, name, half):
    """Make the method ``owner.name`` write ``half(args)`` bytes to its target, then fail as a full disk does
    (the target: the path itself for Path.write_text, the first argument for DataFrame.to_parquet)."""
    def write(obj, *args, **kwargs):
        target = obj if isinstance(obj, Path) else args[0]
        Path(target).write_bytes(half(args))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(owner, name, write)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_mid_write_keeps_the_old_text_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out" / "summary.json"
    io.write_json(target, {"old": 1})
    before = target.read_bytes()
    original = Path.write_text
    disk_full_after(monkeypatch, Path, "write_text", lambda args: args[0][:5].encode())
    with pytest.raises(KinjectError, match=rf"^{target}: no space left on the device while writing it: nothing "
                       "written, an earlier version kept; free space and run again$"):
        io.write_json(target, {"new": 2})
    assert target.read_bytes() == before and leftovers(target.parent) == []
    monkeypatch.setattr(Path, "write_text", original)
    fresh = tmp_path / "out" / "fresh.txt"
    disk_full_after(monkeypatch, Path, "write_text", lambda args: b"par")
    with pytest.raises(KinjectError, match="no space left"):
        io.write_text(fresh, "partial")
    assert not fresh.exists() and leftovers(fresh.parent) == []


def test_a_full_disk_mid_parquet_or_directory_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "chunks.parquet"
    disk_full_after(monkeypatch, pd.DataFrame, "to_parquet", lambda args: b"PAR1 cut")
    with pytest.raises(KinjectError, match=rf"^{target}: no space left on the device"):
        io.write_parquet(target, pd.DataFrame({"text": ["a"]}))
    assert not target.exists() and leftovers(tmp_path) == []

    model = tmp_path / "model"
    (model).mkdir()
    (model / "config.json").write_text("{}")  # the earlier build
    with pytest.raises(KinjectError, match=rf"^{model}: disk quota exceeded"):
        with io.atomic_path(model, directory=True) as tmp:
            (tmp / "config.json").write_text('{"new": ')
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert [p.name for p in model.iterdir()] == ["config.json"] and (model / "config.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_other_write_errors_are_not_reworded(tmp_path):
    with pytest.raises(PermissionError):
        with io.atomic_path(tmp_path / "x.txt"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert leftovers(tmp_path) == []
