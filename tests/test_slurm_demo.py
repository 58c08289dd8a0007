"""The demo pipeline through `snakemake --profile slurm all` on a live one-node SLURM cluster.

The grid is the demo's scaled down (conftest.small_demo_config) so that the cluster's per-job
overhead stays small; the same config run locally must give identical result tables.
"""

import pytest
from conftest import copy_checkout, result_tables, run_snakemake, small_demo_config
from slurm_cluster import scontrol_job, snakemake_flags

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
GPU_RULES = {"build_base_model", "finetune", "index_chunks", "retrieve", "evaluate_base", "evaluate_ft",
             "evaluate_ftrag"}


def test_demo_through_slurm_matches_a_local_run(slurm_cluster, small_demo_local, tmp_path):
    cluster = copy_checkout(tmp_path)
    config = small_demo_config(cluster)
    run = run_snakemake(cluster, "--profile", "slurm", "all", *snakemake_flags(), "--configfile", config,
                        env=slurm_cluster.env, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    slurm_logs = cluster / ".snakemake" / "slurm_logs"  # rule_<name>/<wildcards>/<jobid>.log
    job_logs = list(slurm_logs.rglob("*.log"))
    rules = [log.relative_to(slurm_logs).parts[0].removeprefix("rule_") for log in job_logs]
    assert set(rules) == GPU_RULES  # the light and network-bound rules stayed local
    # 9 cells, one job per checkpoint: atlas base (+ RAG), FT p0, FT+RAG p0; news base (+ RAG), FT p0, FT p1,
    # FT+RAG p1
    assert {r: rules.count(r) for r in GPU_RULES if r.startswith("evaluate")} == {
        "evaluate_base": 2, "evaluate_ft": 3, "evaluate_ftrag": 2}
    for log in job_logs:
        job = scontrol_job(log.stem, slurm_cluster.env)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == slurm_cluster.partition, job

    local, _ = small_demo_local
    tables = result_tables(cluster)
    assert sorted(tables) == ["best_k.csv", "current_events_0shot.csv", "mmlu_0shot.csv", "scores.csv"]
    assert tables == result_tables(local)
