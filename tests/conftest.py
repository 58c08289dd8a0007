"""Shared pytest fixtures."""

import tempfile
from pathlib import Path

import pytest

from slurm_cluster import SlurmUnavailable, local_slurm_cluster


@pytest.fixture(scope="session")
def slurm_cluster():
    """A live one-node SLURM cluster on localhost for the whole session (skips where none can run).

    Its state lives in its own temporary directory, not under pytest's basetemp, which concurrent
    pytest sessions may rotate away while the daemons still run.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="kinject-slurm-") as workdir, \
                local_slurm_cluster(Path(workdir)) as cluster:
            yield cluster
    except SlurmUnavailable as reason:
        pytest.skip(f"no local SLURM cluster: {reason}")


REPO = Path(__file__).resolve().parents[1]


def copy_checkout(dest: Path) -> Path:
    """The project's files (tracked and untracked-but-not-ignored) copied to dest: a clean checkout."""
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_symlink() or src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def run_snakemake(workdir: Path, *args, env=None, timeout=1800):
    """`snakemake ARGS` in workdir with the venv's tools first on PATH; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(Path(sys.executable).parent / "snakemake"), *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The embedded demo run once, end to end, in a fresh copy of the checkout (`make demo`'s command)."""
    workdir = copy_checkout(tmp_path_factory.mktemp("demo"))
    proc = run_snakemake(workdir, "all", "--cores", "2", "--configfile", "config/demo.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir
