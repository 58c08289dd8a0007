"""SLURM's time limit stops a fine-tune through `snakemake --profile slurm` on the suite's live one-node SLURM cluster,
and the rerun resumes it (a file of its own, the suite's longest test: pytest-xdist runs a file's tests on one worker,
so this one runs beside tests/test_slurm.py, each worker with a cluster of its own)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_DEMO, run_snakemake
from slurm_cluster import scontrol_job, snakemake_flags

from kinject.paths import work_dir

# The fine-tune the time-limit test stops: current events' set 10 (15 steps an epoch on the tiny demo) for 48
# epochs instead of its search's 3 (720 steps, about 200 s on 2 cores with native bf16): longer than the 60-90 s
# a one-minute limit gives it (slurmctld checks limits every 30 s), on a CPU twice as fast too.
LONG_EPOCHS = 48


@pytest.mark.slurm
def test_a_fine_tune_past_its_slurm_time_limit_saves_a_checkpoint_and_the_rerun_resumes(slurm_cluster, demo_copy):
    """SLURM's time limit (resources.gpu_rules.runtime: 1 minute) stops a fine-tune through `--profile slurm`:
    SIGTERM reaches every process of the job (launcher, accelerate, the training process) and the training saves
    a checkpoint before SLURM's SIGKILL; the job ends TIMEOUT. The rerun with the run's own runtime resumes from
    that checkpoint and finishes with one loss row per step."""
    chosen = demo_copy / "results" / "hparams" / "tiny-llama" / "current_events" / "chosen.json"
    run_dir = Path("results") / "finetune" / "tiny-llama" / "current_events" / "k10"
    target = str(run_dir / "train_loss.csv")
    searched = json.loads(chosen.read_text())
    steps = len(pd.read_csv(demo_copy / target)) // searched["epochs"] * LONG_EPOCHS  # the longer run's
    chosen.write_text(json.dumps({**searched, "epochs": LONG_EPOCHS}))  # k10 now outdated
    (demo_copy / "config" / "one_minute.yaml").write_text(yaml.safe_dump({"resources": {"gpu_rules": {"runtime": 1}}}))
    flags = ["--profile", "slurm", target, *snakemake_flags(), "--configfile", TINY_DEMO]

    stopped = run_snakemake(demo_copy, *flags, "config/one_minute.yaml", "--retries", "0", env=slurm_cluster.env,
                            timeout=600)
    assert stopped.returncode != 0, stopped.stderr[-3000:]
    (job_log,) = (demo_copy / ".snakemake" / "slurm_logs" / "rule_finetune").rglob("*.log")
    job = scontrol_job(job_log.stem, slurm_cluster.env)
    assert job["JobState"] == "TIMEOUT" and job["TimeLimit"] == "00:01:00", job
    text = (demo_copy / "logs" / "finetune" / "tiny-llama_current_events_k10.log").read_text()
    (checkpoint,) = (demo_copy / work_dir(str(run_dir))).glob("checkpoint-*")
    step = int(checkpoint.name.rsplit("-", 1)[1])
    assert f"saving a checkpoint at step {step}" in text and 0 < step < steps, text[-3000:]
    assert f"{checkpoint.relative_to(demo_copy)}: saved after SIGTERM at step {step}" in text, text[-3000:]
    assert not (demo_copy / target).exists()

    resumed = run_snakemake(demo_copy, *flags, env=slurm_cluster.env, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoint.relative_to(demo_copy)}" in (
        demo_copy / "logs" / "finetune" / "tiny-llama_current_events_k10.log").read_text()
    assert pd.read_csv(demo_copy / target)["step"].tolist() == list(range(1, steps + 1))
