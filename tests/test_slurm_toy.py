"""`snakemake --profile slurm all` runs a toy workflow through a real local SLURM cluster."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
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
CPU_RULES = ("first", "second")
GPU_RULES = {"one_gpu": ("gres:gpu:1", 1), "two_typed_gpus": (f"gres:gpu:{GPU_TYPE}:2", 2)}


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
    for rule in [*CPU_RULES, *GPU_RULES]:
        logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").glob("*.log"))
        assert len(logs) == 1, f"{rule}: {logs}"
        jobs[rule] = scontrol_job(logs[0].stem, slurm_cluster.env)
        environments[rule] = job_environment(workdir / f"{rule}.env")
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert job["Partition"] == slurm_cluster.partition
        assert job["Comment"] == f"rule_{rule}"
        assert environments[rule]["SLURM_JOB_ID"] == job["JobId"], rule  # the rule ran inside that job
    for rule in CPU_RULES:  # no GPU asked, none allocated, none visible
        assert "TresPerJob" not in jobs[rule] and jobs[rule]["JOB_GRES"] == "(null)", (rule, jobs[rule])
        assert "CUDA_VISIBLE_DEVICES" not in environments[rule], rule
    for rule, (request, count) in GPU_RULES.items():  # asked, allocated (of the node's type), visible
        assert jobs[rule]["TresPerJob"] == request, (rule, jobs[rule])
        assert jobs[rule]["JOB_GRES"] == f"gpu:{GPU_TYPE}:{count}", (rule, jobs[rule])
        devices = environments[rule].get("CUDA_VISIBLE_DEVICES", "").split(",")
        assert len(set(devices)) == count and set(devices) <= {str(i) for i in range(slurm_cluster.gpus)}, devices
    assert jobs["second"]["MinMemoryNode"] == "500M"
    assert jobs["second"]["TimeLimit"] == "00:07:00"
    print(f"toy workflow through SLURM: {elapsed:.1f} s")
