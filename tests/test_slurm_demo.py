"""The demo pipeline through `snakemake --profile slurm all` on a live one-node SLURM cluster.

The grid is the demo's scaled down (conftest.small_demo_config) so that the cluster's per-job
overhead stays small; the same config run locally must give identical result tables: the suite's check that a
second run from scratch reproduces every table (every random choice seeded from the config). Through SLURM the
GPU rules ask for one of the cluster's emulated GPUs each (config/slurm_gpus.yaml on top of it), which
SLURM must allocate; with no CUDA behind them they run on the CPU (resources.allow_cpu).
"""

import re
from pathlib import Path

import pytest
import yaml
from conftest import copy_checkout, result_tables, run_snakemake, small_demo_config
from slurm_cluster import scontrol_job, snakemake_flags

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
# hparam_trial: current events' search (the small demo drops atlas's); its set 0 is the chosen trial's model
GPU_RULES = {"build_base_model", "hparam_trial", "finetune", "finetune_steps", "index_chunks", "retrieve",
             "evaluate_base", "evaluate_ft", "evaluate_ftrag", "evaluate_steps"}
GPUS_OVERLAY = {"resources": {"gpu_rules": {"gpu": 1}, "allow_cpu": True}}
JOB_ENVIRONMENT = re.compile(r" job environment: (.*)$", re.MULTILINE)


def job_environments(log_dir: Path) -> dict[str, dict[str, str]]:
    """The 'job environment' line every job writes to its log (kinject.cli.log_job_environment), parsed
    into a NAME -> value dict, by log file; a file whose lines (one per process) disagree fails."""
    environments = {}
    for log in sorted(log_dir.rglob("*.log")):
        lines = set(JOB_ENVIRONMENT.findall(log.read_text()))
        assert len(lines) == 1, f"{log}: {lines}"
        environments[str(log.relative_to(log_dir))] = dict(field.split("=", 1) for field in lines.pop().split(", "))
    return environments


def test_demo_through_slurm_matches_a_local_run(slurm_cluster, small_demo_local, tmp_path):
    cluster = copy_checkout(tmp_path)
    config = small_demo_config(cluster)
    (cluster / "config" / "slurm_gpus.yaml").write_text(yaml.safe_dump(GPUS_OVERLAY))
    run = run_snakemake(cluster, "--profile", "slurm", "all", *snakemake_flags(),
                        "--configfile", config, "config/slurm_gpus.yaml", env=slurm_cluster.env, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    slurm_logs = cluster / ".snakemake" / "slurm_logs"  # rule_<name>/<wildcards>/<jobid>.log
    job_logs = list(slurm_logs.rglob("*.log"))
    rules = [log.relative_to(slurm_logs).parts[0].removeprefix("rule_") for log in job_logs]
    assert set(rules) == GPU_RULES  # the light and network-bound rules stayed local
    # 10 cells, one job per checkpoint: atlas base (+ RAG), FT p0, FT+RAG p0; news base (+ RAG), FT p0, FT p1,
    # FT+RAG p1, FT-steps1 (the steps-matched control of set 1)
    assert {r: rules.count(r) for r in GPU_RULES if r.startswith("evaluate")} == {
        "evaluate_base": 2, "evaluate_ft": 3, "evaluate_ftrag": 2, "evaluate_steps": 1}
    jobs = {log.stem: scontrol_job(log.stem, slurm_cluster.env) for log in job_logs}
    for job in jobs.values():  # every SLURM job is a GPU rule's, asked for one GPU and was allocated it
        assert job["JobState"] == "COMPLETED" and job["Partition"] == slurm_cluster.partition, job
        assert job["TresPerJob"] == "gres:gpu:1" and job["JOB_GRES"] == f"gpu:{slurm_cluster.gpu_type}:1", job

    # Each job's own log: GPU rules ran inside their SLURM job and saw its GPU in CUDA_VISIBLE_DEVICES
    # (finetune's log holds its accelerate processes' output too, but one such line); local rules saw none.
    environments = job_environments(cluster / "logs")
    in_slurm = {log: env for log, env in environments.items() if env["SLURM_JOB_ID"] != "unset"}
    assert sorted(env["SLURM_JOB_ID"] for env in in_slurm.values()) == sorted(jobs)  # one log per job
    # the hub is switched off in every SLURM job (rules/common.smk sets it for the workflow and so its jobs)
    assert {(env["HF_HUB_OFFLINE"], env["HF_DATASETS_OFFLINE"]) for env in in_slurm.values()} == {("1", "1")}
    assert {log.split("/")[0] for log in in_slurm} == {"build_base_model", "hparam_trial", "finetune", "finetune_steps",
                                                       "index_chunks", "retrieve", "evaluate"}
    gpu_indices = {str(index) for index in range(slurm_cluster.gpus)}
    for log, env in in_slurm.items():
        assert env["CUDA_VISIBLE_DEVICES"] in gpu_indices, (log, env)
    local = {log: env for log, env in environments.items() if log not in in_slurm}
    assert {log.split("/")[0] for log in local} >= {"clean_dump", "make_chunks", "lmeval_task", "tables"}
    for log, env in local.items():
        assert env["CUDA_VISIBLE_DEVICES"] == "unset", (log, env)

    local_run, _ = small_demo_local
    tables = result_tables(cluster)
    assert sorted(tables) == ["best_k.csv", "comparisons.csv", "current_events_0shot.csv", "mmlu_0shot.csv",
                              "paraphrase_trend.csv", "scores.csv"]
    assert tables == result_tables(local_run)
