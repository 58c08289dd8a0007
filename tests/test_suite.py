"""The suite's own rules (tests/conftest.py): pipeline-running tests are in the slow tier whatever their marks,
and a skip fails where the environment requires the test to run (KINJECT_REQUIRE_SLURM, KINJECT_REQUIRE_ALL)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

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


def probe(tmp_path, *args, **env) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """PROBE run by pytest with conftest.py as its plugin (no KINJECT_REQUIRE_* but `env`): the process and
    each test's outcome (PASSED, FAILED, ERROR, SKIPPED) from the -rA summary."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\nmarkers =\n    slow: s\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KINJECT_REQUIRE")}
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
