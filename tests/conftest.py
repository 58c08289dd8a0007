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
