"""`snakemake --profile slurm all` runs a toy workflow through a real local SLURM cluster."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from snakemake.cli import get_profile_dir
from snakemake.profiles import ProfileConfigFileParser

from slurm_cluster import scontrol_job, snakemake_flags

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TOY_RULES = ("first", "second", "third")
TOY_SNAKEFILE = """\
localrules: all

rule all:
    input: "third.txt"

rule first:
    output: "first.txt"
    resources: gpu=0
    shell: "echo first > {output}"

rule second:
    input: "first.txt"
    output: "second.txt"
    resources: mem_mb=500, runtime=7
    shell: "cat {input} > {output} && echo second >> {output}"

rule third:
    input: "second.txt"
    output: "third.txt"
    shell: "cat {input} > {output} && echo third >> {output}"
"""


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
    assert (workdir / "third.txt").read_text().split() == ["first", "second", "third"]

    jobs = {}
    for rule in TOY_RULES:
        logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").glob("*.log"))
        assert len(logs) == 1, f"{rule}: {logs}"
        jobs[rule] = scontrol_job(logs[0].stem, slurm_cluster.env)
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert job["Partition"] == slurm_cluster.partition
        assert job["Comment"] == f"rule_{rule}"
        assert "gpu" not in job["TRES"]  # and this cluster has no GRES: sbatch rejects any GPU request
    assert jobs["second"]["MinMemoryNode"] == "500M"
    assert jobs["second"]["TimeLimit"] == "00:07:00"
    print(f"toy workflow through SLURM: {elapsed:.1f} s")
