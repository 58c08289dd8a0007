"""Bad inputs and bad endings through Snakemake itself, each by running the rule: an LLM answering with letters,
a malformed MMLU CSV (one line each, naming the file and what is wrong), a Snakemake run SIGKILLed during a
fine-tune (the re-run resumes from the job's last checkpoint to the same loss) and a protected output that
Snakemake refuses to overwrite (run as an unprivileged user: root's writes ignore mode bits)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_checkout, run_snakemake, skip_unless_required, tiny_demo_config
from loopback import Handler, serve
from process_tree import run as run_tree

pytestmark = pytest.mark.slow  # each runs part of the pipeline


def kinject_errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("kinject error")]


class LetterAnswers(Handler):
    """An OpenAI-compatible endpoint whose questions carry their answers as letters ("A") instead of indices."""

    calls = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        questions = [{"question": f"Question {i}?", "choices": ["w", "x", "y", "z"], "answer": "ABCD"[i % 4]}
                     for i in range(4)]
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": json.dumps({"questions": questions})}}],
                 "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}
        self.respond(200, json.dumps(reply))


def test_letter_answers_stop_generate_questions_in_one_line(tmp_path):
    workdir = copy_checkout(tmp_path)
    LetterAnswers.calls = 0
    with serve(LetterAnswers) as url:
        (workdir / "live.yaml").write_text(yaml.safe_dump(
            {"llm": {"mode": "live", "base_url": f"{url}/v1", "cache": "llm-cache"}}))
        proc = run_snakemake(workdir, "results/current_events/questions/candidates.parquet", "--cores", "2",
                             "--configfile", "config/demo.yaml", "live.yaml",
                             env={**os.environ, "OPENAI_API_KEY": "sk-test"}, timeout=900)
    assert proc.returncode != 0
    chunks = len(pd.read_parquet(workdir / "results" / "current_events" / "chunks.parquet"))
    assert LetterAnswers.calls == 3 * chunks  # each chunk asked again twice (llm.invalid_retries), then quarantined
    assert kinject_errors(proc) == [
        f"kinject error: results/current_events/questions/candidates_quarantine.jsonl: {chunks} of {chunks} LLM calls quarantined "
        "(100%), more than llm.max_quarantined_fraction 0.1 allows; the first: answer 'A' is a letter, not the "
        "index 0-3 of the correct choice (every reply is in the job's log: Snakemake removes a failed job's "
        "outputs, this file with them)"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "results" / "current_events" / "questions" / "candidates.parquet").exists()


def test_a_malformed_mmlu_csv_stops_its_loader_in_one_line(tmp_path):
    workdir = copy_checkout(tmp_path)
    csv = workdir / "resources" / "demo" / "mmlu" / "data" / "test" / "atlas_test.csv"
    lines = csv.read_text().splitlines(keepends=True)
    lines[2] = '"' + lines[2]  # a stray quote opening row 3: pandas read it as a question swallowing later rows
    csv.write_text("".join(lines))
    proc = run_snakemake(workdir, "results/atlas/questions.parquet", "--cores", "1", "--configfile",
                         "config/demo.yaml")
    assert proc.returncode != 0
    assert kinject_errors(proc) == [
        "kinject error: resources/demo/mmlu/data/test/atlas_test.csv: "
        "malformed CSV at line 19: ',' expected after '\"'"], proc.stderr[-3000:]  # where the next quote is
    assert "Traceback" not in proc.stderr and not (workdir / "results" / "atlas" / "questions.parquet").exists()


def kill_tree(run: subprocess.Popen) -> None:
    """SIGKILL snakemake's process group and every process below it, as a node's end (or SLURM's cgroup kill)
    does. The group alone is not enough: torch's elastic launcher starts each training worker in a session of
    its own, which would train on, finish the job and clear its checkpoints after snakemake died."""
    import psutil

    tree = []
    for _ in range(10):  # a process may end while the tree is listed: list it again
        try:
            tree = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
            break
        except psutil.NoSuchProcess:
            if run.poll() is not None:
                break
    try:
        os.killpg(run.pid, signal.SIGKILL)  # snakemake, the job's script, accelerate launch
    except ProcessLookupError:  # the group has ended already
        pass
    for process in tree:
        try:
            process.kill()  # the workers in their own sessions
        except psutil.NoSuchProcess:
            pass
    run.wait()
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, alive


FINETUNE = "results/finetune/tiny-llama/current_events/k0"
WORK = "results/.work/finetune/tiny-llama/current_events/k0"


@pytest.mark.timeout(3600)  # four Snakemake runs, two of them training
def test_a_sigkilled_run_resumes_the_fine_tune_from_its_last_checkpoint(tmp_path):
    """`snakemake` and its job killed (SIGKILL, `kill_tree`) after the fine-tune's first epoch checkpoint;
    `--unlock`, then the re-run (--rerun-incomplete) resumes from it to the loss of a run never killed."""
    workdir = copy_checkout(tmp_path)
    config = tiny_demo_config(workdir)
    build = config["models"]["tiny-llama"]["build"]  # the base model only has to exist: 100 texts, one epoch
    corpus = (workdir / build["pretrain_corpus"]).read_text().splitlines(keepends=True)[:100]
    (workdir / "pretrain_100.jsonl").write_text("".join(corpus))
    build.update(pretrain_corpus="pretrain_100.jsonl", pretrain_epochs=1)
    config["finetune"]["epochs"] = 2  # a checkpoint after the first, the kill before the second ends
    # no search for current events: set 0 is then trained by rule finetune at finetune.lr / epochs (with a
    # search it is the chosen trial's model, hard-linked by validated_model, and no fine-tune runs)
    del config["tasks"]["current_events"]["validation"]
    (workdir / "kill.yaml").write_text(yaml.safe_dump(config))
    target = [f"{FINETUNE}/checkpoint", "--cores", "2", "--configfile", "kill.yaml"]
    whole = run_snakemake(workdir, *target)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = pd.read_csv(workdir / FINETUNE / "train_loss.csv")
    assert not list((workdir / WORK).glob("checkpoint-*"))  # cleared after a finished job

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    snakemake = bin_dir / "snakemake"
    run = subprocess.Popen([str(snakemake), *target, "--forcerun", "finetune"], cwd=workdir, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while not list((workdir / WORK).glob("checkpoint-*/trainer_state.json")):
            assert run.poll() is None, "the run ended before the fine-tune's first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 15 minutes"
            time.sleep(0.05)
    finally:
        kill_tree(run)
    # the newest complete one, which the re-run resumes from: the Trainer writes the next checkpoint before it
    # deletes the last (save_total_limit), so the kill may leave two
    checkpoint = max((p.parent.name for p in (workdir / WORK).glob("checkpoint-*/trainer_state.json")),
                     key=lambda name: int(name.rsplit("-", 1)[1]))
    assert not (workdir / FINETUNE / "train_loss.csv").exists()  # --forcerun removed it; the job never finished

    locked = run_snakemake(workdir, *target)
    assert locked.returncode != 0 and "--unlock" in locked.stderr  # what a user sees first after a SIGKILL
    assert run_snakemake(workdir, "--unlock", *target).returncode == 0
    rerun = run_snakemake(workdir, *target, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (workdir / "logs" / "finetune" / "tiny-llama_current_events_k0.log").read_text()
    assert f"resuming from {workdir / WORK / checkpoint}" in log or f"resuming from {WORK}/{checkpoint}" in log, log
    resumed = pd.read_csv(workdir / FINETUNE / "train_loss.csv")
    assert resumed["step"].tolist() == reference["step"].tolist()
    assert resumed["loss"].iloc[-1] == pytest.approx(reference["loss"].iloc[-1], rel=1e-3)


# What makes root ignore mode bits: without them in its bounding set, root's processes (Snakemake, its jobs)
# meet the permission checks any user meets, and os.access(W_OK) on a read-only file is False.
DAC_CAPABILITIES = "-dac_override,-dac_read_search"


def unprivileged(command: list[str]) -> list[str]:
    """command without the capabilities that let root write a read-only file (setpriv), where this test runs
    as root; as is for any other user."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip_unless_required("KINJECT_REQUIRE_ALL", "running as root, and no setpriv to drop CAP_DAC_OVERRIDE")
    return [setpriv, f"--bounding-set={DAC_CAPABILITIES}", "--", *command]


def test_snakemake_refuses_to_overwrite_a_protected_output(tmp_path):
    """protect: true: a re-run of a job whose output is write-protected fails, the file untouched. Snakemake
    decides by os.access(W_OK), which is true for root whatever the mode: the runs go without root's
    CAP_DAC_OVERRIDE (`unprivileged`), as an ordinary user's would. (Not as the user nobody: this venv's
    interpreter lies under /root, which only root may enter.)"""
    workdir = copy_checkout(tmp_path)
    (workdir / "protect.yaml").write_text("protect: true\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    pages = workdir / "results" / "atlas" / "raw" / "pages.xml"

    def snakemake(*args):
        return run_tree(unprivileged([str(bin_dir / "snakemake"), "results/atlas/raw/pages.xml", "--cores", "1",
                                      "--configfile", "config/demo.yaml", "protect.yaml", *args]),
                        cwd=workdir, env=env, timeout=600)

    made = snakemake()
    assert made.returncode == 0, made.stderr[-3000:]
    before = pages.read_bytes()
    assert pages.stat().st_mode & 0o222 == 0
    if os.geteuid() == 0:
        assert os.access(pages, os.W_OK)  # why the runs drop the capability: to root it is writable
    again = snakemake("--forcerun", "fetch")
    assert again.returncode != 0
    assert "Write-protected output files for rule fetch" in again.stderr, again.stderr[-3000:]
    assert "results/atlas/raw/pages.xml" in again.stderr
    assert pages.read_bytes() == before and pages.stat().st_mode & 0o222 == 0
