"""kinject.cli.rule_main: the entry point every script rule goes through."""

import logging
from types import SimpleNamespace

import pytest

from kinject.cli import rule_main


@pytest.fixture
def restore_root_logger():
    """rule_main reconfigures the root logger (force=True); put the test session's handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level


def test_rule_main_logs_the_job_environment_first(tmp_path, monkeypatch, restore_root_logger):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    log = tmp_path / "logs" / "rule.log"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    job = SimpleNamespace(log=[str(log)], threads=3, rule="rule", wildcards={}, resources=SimpleNamespace(
        items=dict().items, get=dict().get))

    assert rule_main(job, lambda x: x * 2, 21) == 42
    first_line = log.read_text().splitlines()[0]
    assert first_line.endswith("kinject INFO job environment: threads=3, OMP_NUM_THREADS=3, CUDA_VISIBLE_DEVICES=1,3, "
                              "SLURM_JOB_ID=unset, HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=unset")

