"""The demo pipeline through `snakemake --profile slurm all` on a live one-node SLURM cluster.

The grid is the demo's, scaled down so that the cluster's per-job overhead stays small (two
paraphrase sets, K in {0, 1}, a shorter base-model pre-training; CPU jobs of one core so two run at
once); the same config is run locally and the result tables must be identical.
"""

from pathlib import Path

import pytest
import yaml
from conftest import copy_checkout, run_snakemake
from slurm_cluster import scontrol_job, snakemake_flags

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
GPU_RULES = {"build_base_model", "finetune", "index_chunks", "retrieve", "evaluate"}


def small_demo_config(workdir: Path) -> str:
    config = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())
    config["models"]["tiny-llama"]["build"]["pretrain_epochs"] = 1
    atlas, news = config["tasks"]["atlas"], config["tasks"]["current_events"]
    atlas["shots"] = [0]
    del atlas["validation"]
    news["paraphrase_sets"], news["ft_rag_paraphrase_sets"] = [0, 1], [1]
    config["retrieval"]["k"] = [0, 1]
    config["resources"]["gpu_rules"]["cpus_per_task"] = 1
    (workdir / "config" / "slurm_demo.yaml").write_text(yaml.safe_dump(config))
    return "config/slurm_demo.yaml"


def test_demo_through_slurm_matches_a_local_run(slurm_cluster, tmp_path):
    local, cluster = copy_checkout(tmp_path / "local"), copy_checkout(tmp_path / "cluster")
    config = small_demo_config(local)
    small_demo_config(cluster)

    run = run_snakemake(cluster, "--profile", "slurm", "all", *snakemake_flags(), "--configfile", config,
                        env=slurm_cluster.env, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    slurm_logs = cluster / ".snakemake" / "slurm_logs"  # rule_<name>/<wildcards>/<jobid>.log
    job_logs = list(slurm_logs.rglob("*.log"))
    rules = {log.relative_to(slurm_logs).parts[0].removeprefix("rule_") for log in job_logs}
    assert rules == GPU_RULES  # the light and network-bound rules stayed local
    for log in job_logs:
        job = scontrol_job(log.stem, slurm_cluster.env)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == slurm_cluster.partition, job
    assert sum(1 for log in job_logs if log.relative_to(slurm_logs).parts[0] == "rule_evaluate") == 9  # 4 atlas cells + 5 current-events cells

    run = run_snakemake(local, "all", "--cores", "2", "--configfile", config)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    tables = sorted(p.relative_to(local) for p in (local / "results" / "tables").glob("*.csv"))
    assert [p.name for p in tables] == ["best_k.csv", "current_events_0shot.csv", "mmlu_0shot.csv", "scores.csv"]
    for table in tables:
        assert (cluster / table).read_text() == (local / table).read_text(), table
