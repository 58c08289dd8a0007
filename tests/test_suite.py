"""The suite's own rules (tests/conftest.py): pipeline-running tests are in the slow tier whatever their marks,
and a skip fails where the environment requires the test to run (KINJECT_REQUIRE_SLURM, KINJECT_REQUIRE_ALL)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
pytest_plugins = ["pytester"]  # pytester: a pytest run inside a test, in this process (the per-file summary's test)

# A cluster that cannot start, a test needing it, one reaching the demo run through its own fixture, a plain
# skip, and a test that runs: collected with the suite's conftest.py as the only plugin.
PROBE = '''
import pytest

import conftest
from slurm_cluster import SlurmUnavailable


def no_cluster(workdir):
    raise SlurmUnavailable("no root here")


conftest.local_slurm_cluster = no_cluster


@pytest.fixture
def my_run(demo_run):
    return demo_run


def test_on_the_cluster(slurm_cluster):
    pass


def test_on_the_demo_run(my_run):
    pass


def test_host_without_x():
    pytest.skip("this host has no X")


def test_runs():
    pass


def test_runs_snakemake_unmarked(tmp_path):
    conftest.run_snakemake(tmp_path, "--version")


@pytest.mark.slow
def test_runs_snakemake_marked(tmp_path):
    assert conftest.run_snakemake(tmp_path, "--version").returncode == 0
'''


def probe(tmp_path, *args, source=PROBE, **env) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """`source` (PROBE) as test_probe.py run by pytest with conftest.py as its plugin (no KINJECT_REQUIRE_* but
    `env`): the process and each test's outcome (PASSED, FAILED, ERROR, SKIPPED) from the -rA summary."""
    (tmp_path / "test_probe.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\nmarkers =\n    slow: s\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KINJECT_REQUIRE", "KINJECT_SESSION"))}
    clean["PYTHONPATH"] = os.pathsep.join([str(TESTS), clean.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
                           "-p", "no:random_order", "--rootdir", str(tmp_path), "-rA", "-v", *args, "test_probe.py"],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=300)
    return proc, {test: outcome for test, outcome in
                  re.findall(r"^test_probe.py::(test_\w+) (PASSED|FAILED|ERROR|SKIPPED)", proc.stdout, re.M)}


def test_pipeline_fixtures_put_a_test_in_the_slow_tier(tmp_path):
    proc, _ = probe(tmp_path, "--collect-only", "-m", "not slow")
    assert re.findall(r"<Function (test_\w+)>", proc.stdout) == ["test_host_without_x", "test_runs",
                                                                "test_runs_snakemake_unmarked"], proc.stdout
    assert "3/6 tests collected (3 deselected)" in proc.stdout
    proc, _ = probe(tmp_path, "--collect-only", "-m", "slow")
    assert re.findall(r"<Function (test_\w+)>", proc.stdout) == ["test_on_the_cluster", "test_on_the_demo_run",
                                                                "test_runs_snakemake_marked"]


def test_a_fast_test_that_runs_snakemake_fails_saying_so(tmp_path):
    proc, outcomes = probe(tmp_path, "-k", "snakemake")
    assert outcomes == {"test_runs_snakemake_unmarked": "FAILED", "test_runs_snakemake_marked": "PASSED"}, proc.stdout
    assert ("test_probe.py::test_runs_snakemake_unmarked runs Snakemake (snakemake --version): mark it slow, or use "
            "a fixture of conftest.PIPELINE_FIXTURES") in proc.stdout


@pytest.mark.parametrize("env, cluster, plain", [
    ({}, "SKIPPED", "SKIPPED"),
    ({"KINJECT_REQUIRE_SLURM": "1"}, "ERROR", "SKIPPED"),
    ({"KINJECT_REQUIRE_ALL": "1"}, "ERROR", "FAILED"),
])
def test_a_skip_fails_where_the_environment_requires_the_test(tmp_path, env, cluster, plain):
    proc, outcomes = probe(tmp_path, "-k", "not demo_run and not snakemake", **env)
    assert outcomes == {"test_on_the_cluster": cluster, "test_host_without_x": plain, "test_runs": "PASSED"}, \
        proc.stdout[-3000:]
    assert "no local SLURM cluster: no root here" in proc.stdout
    assert proc.returncode == (1 if env else 0)
    if env:
        assert f"{next(iter(env))}=1" in proc.stdout  # the failure names the variable that made it one


def test_a_skip_at_collection_fails_where_every_test_must_run(tmp_path):
    source = 'import pytest\n\npytest.importorskip("no_such_module")\n\n\ndef test_needs_it():\n    pass\n'
    proc, _ = probe(tmp_path, source=source)
    assert proc.returncode == pytest.ExitCode.NO_TESTS_COLLECTED and "1 skipped" in proc.stdout, proc.stdout[-3000:]
    proc, _ = probe(tmp_path, source=source, KINJECT_REQUIRE_ALL="1")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, proc.stdout[-3000:]
    assert ("test_probe.py skipped at collection, but KINJECT_REQUIRE_ALL=1 requires every test to run: "
            "Skipped: could not import 'no_such_module'") in proc.stdout


def test_once_the_session_budget_is_spent_the_remaining_tests_fail_unrun(tmp_path):
    proc, outcomes = probe(tmp_path, "-k", "test_runs", KINJECT_SESSION_BUDGET_S="0")
    assert outcomes == {"test_runs": "ERROR", "test_runs_snakemake_unmarked": "ERROR",
                        "test_runs_snakemake_marked": "ERROR"}, proc.stdout[-3000:]
    assert "the session's budget is spent (KINJECT_SESSION_BUDGET_S=0 s): not run" in proc.stdout


def test_a_jobs_threads_and_devices_do_not_outlive_the_test_that_ran_it(tmp_path):
    source = """
import os

import torch

from kinject.device import check_gpu, use_threads

THREADS = torch.get_num_threads()
NAMES = ("CUDA_VISIBLE_DEVICES", "RAYON_NUM_THREADS", "OMP_NUM_THREADS")
ENVIRON = {name: os.environ.get(name) for name in NAMES}


def test_runs_a_job_in_process():
    check_gpu(0, False, "x")
    use_threads(THREADS + 1)
    os.environ["OMP_NUM_THREADS"] = "7"
    assert torch.get_num_threads() == THREADS + 1 and os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_after_it():
    assert torch.get_num_threads() == THREADS
    assert {name: os.environ.get(name) for name in NAMES} == ENVIRON
"""
    proc, outcomes = probe(tmp_path, source=source)
    assert outcomes == {"test_runs_a_job_in_process": "PASSED", "test_after_it": "PASSED"}, proc.stdout[-3000:]


# A process that starts a child in its own session (as torch's elastic launcher starts its workers), writes
# both ids and waits.
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(f"{child.pid}\\n")
time.sleep(600)
"""


def running(pid: int) -> bool:
    """Whether pid runs (a zombie has ended: its parent, init after the kill, has not reaped it yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_process_tree_is_stopped_whole(tmp_path, monkeypatch):
    import process_tree
    from process_tree import kill_tree, popen

    pids = tmp_path / "pids"
    started = popen([sys.executable, "-c", TREE, str(pids)])
    try:
        while not pids.exists() or not pids.read_text().endswith("\n"):
            assert started.poll() is None, "the probe ended before it started its child"
            time.sleep(0.05)
    finally:
        kill_tree(started, grace_s=5)
    (child,) = map(int, pids.read_text().split())
    assert started.returncode == -15 and not running(child)  # SIGTERM was enough: no SIGKILL

    # run's timeout stops the tree too (the child, if the probe started it by then, is gone as well)
    started = []
    monkeypatch.setattr(process_tree, "popen", lambda *a, **kw: started.append(popen(*a, **kw)) or started[-1])
    with pytest.raises(subprocess.TimeoutExpired):
        process_tree.run([sys.executable, "-c", TREE, str(tmp_path / "pids2")], timeout=1)
    assert started[0].returncode is not None
    if (tmp_path / "pids2").exists():
        assert not any(map(running, map(int, (tmp_path / "pids2").read_text().split())))


# Two files for the per-file summary: one whose fixture and test sleep (0.2 s in setup, 0.3 s in the call), one of
# two quick tests, one failing (the block is printed on a failed run too).
SLEEPY = """
import time

import pytest


@pytest.fixture
def slow_setup():
    time.sleep(0.2)


def test_sleeps(slow_setup):
    time.sleep(0.3)
"""
QUICK = "def test_passes():\n    pass\n\n\ndef test_fails():\n    assert False\n"


def seconds_block(lines: list[str]) -> list[tuple[float, str]]:
    """The (seconds, name) lines of the "seconds per test file" block."""
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ seconds per test file =+", line))
    return [(float(m[1]), m[2]) for line in lines[start + 1:] if (m := re.fullmatch(r" *(\d+\.\d)  (.+)", line))]


@pytest.mark.parametrize("top, named", [(20, 2), (1, 1)])
def test_the_run_ends_with_seconds_per_test_file(pytester, monkeypatch, top, named):
    import conftest

    monkeypatch.setattr(conftest, "TOP_FILES", top)
    pytester.makepyfile(test_sleepy=SLEEPY, test_quick=QUICK)
    # the suite's conftest as the inner run's plugin; no pytest-timeout there, whose alarm would cancel this test's
    result = pytester.runpytest_inprocess("-p", "conftest", "-p", "no:timeout", "-p", "no:random_order",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    block = seconds_block(result.outlines)
    assert [name for _, name in block[:named]] == ["test_sleepy.py", "test_quick.py"][:named]
    assert block[0][0] >= 0.2 + 0.3  # the fixture's setup counts with the test's call
    if named == 1:
        assert block[1][1] == "1 more file" and block[1][0] < block[0][0]
    assert block[-1][1] == "total, 2 files"
    assert block[-1][0] == pytest.approx(sum(s for s, _ in block[:-1]), abs=0.1 * len(block))  # each rounded to 0.1
