"""The SLURM profile, and the workflow through `snakemake --profile slurm` on a live one-node SLURM cluster (SLURM's
time limit: tests/test_slurm_time_limit.py, a file of its own so that pytest-xdist can run it beside this one).

A toy workflow: CPU rules get no GPU, GPU rules the GPUs they ask for (by count, and by count and model).

The demo: the tiny demo's shared run (conftest.demo_run) is copied, and a slice of its cells is made again from scratch
through SLURM (`--forceall` with those cells as targets: every job they need, the knowledge bases' fetch
included; every GPU rule's jobs among them): their score files and per-question records must equal the local
run's byte for byte, the suite's check that a second run from scratch reproduces every number (every random
choice is seeded from the config; the tables are a function of these files). Through SLURM the GPU rules ask for
one of the cluster's emulated GPUs each (config/slurm_gpus.yaml on top of it), which SLURM must allocate; with no
CUDA behind them they run on the CPU (resources.allow_cpu). The slice runs under `protect: true`, config.yaml's
setting, so that the test also checks what Snakemake write-protects.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_DEMO, run_snakemake
from slurm_cluster import GPU_TYPE, scontrol_job, snakemake_flags
from snakemake.cli import get_profile_dir
from snakemake.profiles import ProfileConfigFileParser

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# Each toy rule writes its job's environment after its inputs: which rules ran where, and with what.
# first and second are CPU rules (first says gpu=0, second asks for nothing GPU-related), one_gpu asks
# for a GPU by count (`--gpus=1`), two_typed_gpus by count and model (`--gpus=emu:2`, the cluster's type).
TOY_SNAKEFILE = """\
localrules: all

rule all:
    input: "second.env", "one_gpu.env", "two_typed_gpus.env"

rule first:
    output: "first.env"
    resources: gpu=0
    shell: "echo first > {output} && env >> {output}"

rule second:
    input: "first.env"
    output: "second.env"
    resources: mem_mb=500, runtime=7
    shell: "head -n1 {input} > {output} && echo second >> {output} && env >> {output}"

rule one_gpu:
    output: "one_gpu.env"
    resources: gpu=1
    shell: "env > {output}"

rule two_typed_gpus:
    output: "two_typed_gpus.env"
    resources: gpu=2, gpu_model="%s"
    shell: "env > {output}"
""" % GPU_TYPE
TOY_CPU_RULES = ("first", "second")
TOY_GPU_RULES = {"one_gpu": ("gres:gpu:1", 1), "two_typed_gpus": (f"gres:gpu:{GPU_TYPE}:2", 2)}


def job_environment(path: Path) -> dict[str, str]:
    """NAME=value lines of an `env` dump as a dict (other lines ignored)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def load_slurm_profile(monkeypatch, **environ) -> dict:
    """The slurm profile as snakemake parses it, under the given extra environment variables."""
    for name in ("SBATCH_PARTITION", "SBATCH_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with open(REPO / "profiles" / "slurm" / "config.yaml") as stream:
        return ProfileConfigFileParser().parse(stream)


def test_bare_profile_names_resolve_from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)
    profile_dir, config_file = get_profile_dir("slurm")
    assert Path(profile_dir).resolve() == REPO / "profiles" / "slurm"
    assert Path(config_file).resolve() == REPO / "profiles" / "slurm" / "config.yaml"
    assert Path(get_profile_dir("profiles/slurm")[1]).resolve() == REPO / "profiles" / "slurm" / "config.yaml"
    assert Path(get_profile_dir("profiles/local")[1]).resolve() == REPO / "profiles" / "local" / "config.yaml"


def test_partition_and_account_come_from_the_environment(monkeypatch):
    unset = load_slurm_profile(monkeypatch)
    assert unset["executor"] == "slurm"
    assert not any(r.startswith(("slurm_partition=", "slurm_account=")) for r in unset["default-resources"])
    given = load_slurm_profile(monkeypatch, SBATCH_PARTITION="gpu-a100", SBATCH_ACCOUNT="12345")
    assert "slurm_partition=gpu-a100" in given["default-resources"]
    assert "slurm_account='12345'" in given["default-resources"]


@pytest.mark.slurm
def test_toy_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    workdir = tmp_path / "toy"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(TOY_SNAKEFILE)
    cmd = [str(SNAKEMAKE), "--profile", "slurm", "all", "--snakefile", str(workdir / "Snakefile"),
           "--directory", str(workdir), *snakemake_flags()]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=REPO, env=slurm_cluster.env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-5000:]
    assert (workdir / "second.env").read_text().split()[:2] == ["first", "second"]

    jobs, environments = {}, {}
    for rule in [*TOY_CPU_RULES, *TOY_GPU_RULES]:
        logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").glob("*.log"))
        assert len(logs) == 1, f"{rule}: {logs}"
        jobs[rule] = scontrol_job(logs[0].stem, slurm_cluster.env)
        environments[rule] = job_environment(workdir / f"{rule}.env")
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert job["Partition"] == slurm_cluster.partition
        assert job["Comment"] == f"rule_{rule}"
        assert environments[rule]["SLURM_JOB_ID"] == job["JobId"], rule  # the rule ran inside that job
    for rule in TOY_CPU_RULES:  # no GPU asked, none allocated, none visible
        assert "TresPerJob" not in jobs[rule] and jobs[rule]["JOB_GRES"] == "(null)", (rule, jobs[rule])
        assert "CUDA_VISIBLE_DEVICES" not in environments[rule], rule
    for rule, (request, count) in TOY_GPU_RULES.items():  # asked, allocated (of the node's type), visible
        assert jobs[rule]["TresPerJob"] == request, (rule, jobs[rule])
        assert jobs[rule]["JOB_GRES"] == f"gpu:{GPU_TYPE}:{count}", (rule, jobs[rule])
        devices = environments[rule].get("CUDA_VISIBLE_DEVICES", "").split(",")
        assert len(set(devices)) == count and set(devices) <= {str(i) for i in range(slurm_cluster.gpus)}, devices
    assert jobs["second"]["MinMemoryNode"] == "500M"
    assert jobs["second"]["TimeLimit"] == "00:07:00"
    print(f"toy workflow through SLURM: {elapsed:.1f} s")


# hparam_trial: current events' search; its set 0 is the chosen trial's model (validated_model, local)
DEMO_GPU_RULES = {"build_base_model", "hparam_trial", "finetune", "finetune_steps", "index_chunks", "retrieve",
                  "evaluate_base", "evaluate_ft", "evaluate_ftrag", "evaluate_steps"}
SLURM_OVERLAY = {"resources": {"gpu_rules": {"gpu": 1}, "allow_cpu": True}, "protect": True}
JOB_ENVIRONMENT = re.compile(r" job environment: (.*)$", re.MULTILINE)
# one cell of each evaluation rule: atlas's RAG K=1 on the base model; current events' FT on set 1, its
# steps-matched control, and FT+RAG K=1 on set 0 (the search's chosen model)
SLICE = ["results/scores/tiny-llama/atlas/rag_k1_0shot_options",
         "results/scores/tiny-llama/current_events/ft-p1_k0_0shot_options",
         "results/scores/tiny-llama/current_events/steps-p1_k0_0shot_options",
         "results/scores/tiny-llama/current_events/ftrag-p0_k1_0shot_options"]


def job_environments(log_dir: Path, since: float) -> dict[str, dict[str, str]]:
    """The 'job environment' line every job written to since `since` (a time.time()) wrote to its log
    (kinject.cli.log_job_environment), parsed into a NAME -> value dict, by log file; a file whose lines (one per
    process) disagree fails."""
    environments = {}
    for log in sorted(log for log in log_dir.rglob("*.log") if log.stat().st_mtime >= since):
        lines = set(JOB_ENVIRONMENT.findall(log.read_text()))
        assert len(lines) == 1, f"{log}: {lines}"
        environments[str(log.relative_to(log_dir))] = dict(field.split("=", 1) for field in lines.pop().split(", "))
    return environments


@pytest.mark.slurm
def test_a_slice_of_the_demo_through_slurm_matches_the_local_run(slurm_cluster, demo_run, demo_copy):
    cluster = demo_copy
    (cluster / "config" / "slurm.yaml").write_text(yaml.safe_dump(SLURM_OVERLAY))
    targets = [f"{cell}.{ext}" for cell in SLICE for ext in ("json", "parquet")]
    start = time.time()
    run = run_snakemake(cluster, "--profile", "slurm", *targets, "--forceall", *snakemake_flags(),
                        "--configfile", TINY_DEMO, "config/slurm.yaml", env=slurm_cluster.env, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    slurm_logs = cluster / ".snakemake" / "slurm_logs"  # rule_<name>/<wildcards>/<jobid>.log
    job_logs = list(slurm_logs.rglob("*.log"))
    rules = [log.relative_to(slurm_logs).parts[0].removeprefix("rule_") for log in job_logs]
    assert set(rules) == DEMO_GPU_RULES  # the light and network-bound rules stayed local
    # one job per slice cell, both tasks' index and top-K, the search's two trials
    assert {r: rules.count(r) for r in DEMO_GPU_RULES} == {
        "build_base_model": 1, "hparam_trial": 2, "finetune": 1, "finetune_steps": 1, "index_chunks": 2,
        "retrieve": 2, "evaluate_base": 1, "evaluate_ft": 1, "evaluate_ftrag": 1, "evaluate_steps": 1}
    jobs = {log.stem: scontrol_job(log.stem, slurm_cluster.env) for log in job_logs}
    for job in jobs.values():  # every SLURM job is a GPU rule's, asked for one GPU and was allocated it
        assert job["JobState"] == "COMPLETED" and job["Partition"] == slurm_cluster.partition, job
        assert job["TresPerJob"] == "gres:gpu:1" and job["JOB_GRES"] == f"gpu:{slurm_cluster.gpu_type}:1", job

    # Each job's own log: GPU rules ran inside their SLURM job and saw its GPU in CUDA_VISIBLE_DEVICES
    # (finetune's log holds its accelerate processes' output too, but one such line); local rules saw none.
    environments = job_environments(cluster / "logs", since=start)  # this run's jobs' (the copy has the others')
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
    assert {log.split("/")[0] for log in local} >= {"clean_dump", "make_chunks", "lmeval_task", "validated_model"}
    for log, env in local.items():
        assert env["CUDA_VISIBLE_DEVICES"] == "unset", (log, env)

    for target in targets:  # made again from scratch, through SLURM: the local run's bytes
        assert (cluster / target).read_bytes() == (demo_run / target).read_bytes(), target

    # protect: true (config.yaml's default): Snakemake made the expensive outputs read-only, the cheap ones not
    runs = cluster / "results" / "finetune" / "tiny-llama" / "current_events"
    expensive = [cluster / "results" / "models" / "tiny-llama" / "base" / "config.json",
                 runs / "k1" / "checkpoint" / "config.json",
                 runs / "k0" / "checkpoint" / "config.json",  # the search's chosen trial's, hard-linked (local rule)
                 cluster / "results" / "atlas" / "raw" / "pages.xml"]
    cheap = [cluster / "results" / "atlas" / "chunks.parquet", cluster / Path(targets[0])]
    assert all(path.stat().st_mode & 0o222 == 0 for path in expensive)
    assert all(path.stat().st_mode & 0o200 for path in cheap)
