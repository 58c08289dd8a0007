"""What a compute job is given is what it uses: its threads reach torch, a GPU it asked for is there or the job
stops with one line, and the console shows Snakemake's lines and one summary line per job."""

import re
from types import SimpleNamespace

import pytest
import yaml
from conftest import copy_checkout, run_snakemake

from kinject.cli import rule_main
from kinject.device import check_gpu
from kinject.errors import KinjectError

INDEX = "results/atlas/index/faiss.index"


def resources(**values):
    """A stand-in for snakemake.resources (a Namedlist: items() and get())."""
    return SimpleNamespace(items=values.items, get=values.get)


def fake_job(tmp_path, **res):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], rule="index_chunks", wildcards={"task": "atlas"},
                           threads=2, resources=resources(**res))


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU host, whatever this one is: torch sees no CUDA and CUDA_VISIBLE_DEVICES is unset (restored after)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def cuda(monkeypatch):
    """A GPU host, whatever this one is: torch sees CUDA; CUDA_VISIBLE_DEVICES unset (restored after)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_a_gpu_job_without_cuda_stops_with_one_line(tmp_path, capfd, no_cuda):
    ran = []
    with pytest.raises(SystemExit) as exit_info:
        rule_main(fake_job(tmp_path, gpu=1, allow_cpu=0), ran.append, "work")
    assert exit_info.value.code == 1 and ran == []  # stopped before the job's function ran
    console = capfd.readouterr().err.strip().splitlines()
    assert console == ["kinject error: index_chunks[task=atlas]: the job asked for 1 GPU(s) but CUDA is not "
                       "available (CUDA_VISIBLE_DEVICES=unset); set resources.allow_cpu: true to run GPU rules "
                       "on the CPU"]
    assert "asked for 1 GPU(s)" in (tmp_path / "job.log").read_text()


def test_allow_cpu_runs_it_on_the_cpu_and_says_so(tmp_path, capfd, no_cuda):
    assert rule_main(fake_job(tmp_path, gpu=1, allow_cpu=1), lambda: "7 chunks indexed") == "7 chunks indexed"
    assert capfd.readouterr().err.splitlines() == ["index_chunks[task=atlas] done: 7 chunks indexed"]
    log = (tmp_path / "job.log").read_text()
    assert "asked for 1 GPU(s); CUDA is not available, running on the CPU" in log
    assert "device cpu, torch threads 2" in log
    with pytest.raises(KinjectError, match="x: the job asked for 2 GPU"):
        check_gpu(2, False, "x")


@pytest.mark.parametrize("host", ["no_cuda", "cuda"])
def test_a_job_that_asked_for_no_gpu_runs_on_the_cpu_and_sees_none(host, request):
    """On either host: 'cpu', and CUDA hidden from everything in the job (what lm-eval etc. will see)."""
    import os

    request.getfixturevalue(host)
    assert check_gpu(0, False, "x") == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert check_gpu(0, True, "x") == "cpu"  # allow_cpu changes nothing for a job that asked for none


def test_a_gpu_job_on_a_gpu_host_runs_on_cuda_with_its_devices(cuda, monkeypatch):
    import os

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert check_gpu(1, False, "x") == check_gpu(1, True, "x") == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"  # what it was given is left as it is


def test_the_hidden_gpu_is_hidden_from_torch_in_the_job(tmp_path):
    """For real, in a fresh process (whatever this host has): after check_gpu(0) torch finds no CUDA device."""
    import subprocess
    import sys

    code = ("import torch; from kinject.device import check_gpu; d = check_gpu(0, False, 'x'); "
            "print(d, torch.cuda.is_available(), torch.cuda.device_count())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["cpu", "False", "0"]


def test_library_output_goes_to_the_log_not_the_console(tmp_path, capfd):
    import logging
    import os
    import sys

    def noisy():
        print("a progress bar")
        os.write(2, b"C-level chatter\n")
        sys.stderr.write("UserWarning: a library warning\n")  # what warnings.warn prints outside pytest
        logging.getLogger("lm_eval").warning("Context length exceeded, truncating")
        return {"chunks": 7}

    rule_main(fake_job(tmp_path), noisy)
    out, err = capfd.readouterr()
    assert out == "" and err == "index_chunks[task=atlas] done: {'chunks': 7}\n"
    log = (tmp_path / "job.log").read_text()
    for line in ("a progress bar", "C-level chatter", "a library warning", "Context length exceeded"):
        assert line in log


@pytest.mark.slow
def test_a_job_gets_its_threads_and_its_gpu_check(tmp_path):
    """Through Snakemake itself: index_chunks declares threads from resources.gpu_rules.cpus_per_task. The run
    hides any GPU of this host (CUDA_VISIBLE_DEVICES empty), so it is a CPU host on a GPU machine too."""
    import os

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    workdir = copy_checkout(tmp_path)
    config = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())
    config["resources"]["gpu_rules"].update(gpu=1, cpus_per_task=2)
    (workdir / "gpu.yaml").write_text(yaml.safe_dump(config))
    failed = run_snakemake(workdir, INDEX, "--cores", "2", "--configfile", "gpu.yaml", env=env)
    assert failed.returncode != 0
    assert ("kinject error: index_chunks[task=atlas]: the job asked for 1 GPU(s) but CUDA is not available"
            in failed.stderr)
    assert not (workdir / INDEX).exists()

    config["resources"]["allow_cpu"] = True
    (workdir / "gpu.yaml").write_text(yaml.safe_dump(config))
    done = run_snakemake(workdir, INDEX, "--cores", "2", "--configfile", "gpu.yaml", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (workdir / "logs" / "index_chunks" / "atlas.log").read_text()
    assert re.search(r"job environment: threads=2, OMP_NUM_THREADS=2, CUDA_VISIBLE_DEVICES=, SLURM_JOB_ID=", log)
    assert "device cpu, torch threads 2" in log
    assert "index_chunks[task=atlas] done:" in done.stderr
    assert not re.search(r"warn", done.stderr, re.I), done.stderr
