"""A fine-tuning job killed with SIGKILL mid-epoch resumes from its last checkpoint when re-run."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from process_tree import kill_tree, popen
from process_tree import run as run_tree

from kinject.io import write_parquet
from kinject.training.models import build_tiny_model

TEXTS = [f"The ferry {i} of the Orrin line sails at {6 + i % 12} o'clock from pier {i % 7} to Velmar." for i in range(480)]


def finetune_cmd(base, train, out, work, loss):
    return [sys.executable, "-m", "kinject.training.finetune", "--base", str(base), "--train", str(train), "--out", str(out),
            "--loss-csv", str(loss), "--lr", "3e-3", "--epochs", "2", "--batch-size", "4",
            "--per-device-batch-size", "4", "--block-size", "32", "--seed", "3", "--work-dir", str(work),
            "--save-steps", "5"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_reaches_the_same_loss(tmp_path):
    base = tmp_path / "base"
    build_tiny_model(TEXTS, base, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=128, seed=0)
    train = tmp_path / "train.parquet"
    write_parquet(train, pd.DataFrame({"text": TEXTS}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    whole = run_tree(finetune_cmd(base, train, tmp_path / "whole", tmp_path / "w1", tmp_path / "whole.csv"), env=env,
                     timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    steps = len(pd.read_csv(tmp_path / "whole.csv"))
    assert steps > 100  # checkpoints every 5 steps: the first one comes early in epoch 1

    args = (base, train, tmp_path / "ft", tmp_path / "w2", tmp_path / "loss.csv")
    job = popen(finetune_cmd(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "w2").glob("checkpoint-*/trainer_state.json")):  # killed mid-epoch 1
            assert job.poll() is None and time.monotonic() < deadline, "the job ended before its first checkpoint"
            time.sleep(0.02)
        job.send_signal(signal.SIGKILL)
        job.wait()
    finally:
        kill_tree(job)  # a failed assertion above leaves no job training on
    assert not (tmp_path / "ft").exists() and not (tmp_path / "loss.csv").exists()

    rerun = run_tree(finetune_cmd(*args), env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stderr
    full, resumed = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "loss.csv")
    assert resumed["step"].tolist() == full["step"].tolist()
    assert resumed["loss"].iloc[-1] == pytest.approx(full["loss"].iloc[-1], rel=1e-3)
