"""Sharded fine-tuning without a GPU: the exact command the rules build (kinject.training.launch.launch_command)
runs a tiny Llama under FSDP2 on 2 CPU processes (gloo), as it would on 2 GPUs.

Tolerance of the loss comparison: both runs see the same global batch (8 blocks: 2 micro-batches of 4 in
one process, one micro-batch of 4 in each of 2 processes) in the same order (the seeded sampler), so every
optimizer step computes the same gradient up to floating-point order. The demo's precision is auto: bf16 on a
CPU with native bf16, fp32 on one without (kinject.precision; the dtype asserted is the one this host resolves).
In bf16, FSDP's bf16 policy returns the loss as a bf16 number, whose spacing is 2**-7 of its value (8
significant bits): the logged losses may differ by one such step, not more (in fp32, far less).
"""

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from process_tree import kill_tree, popen
from process_tree import run as run_tree

from kinject import precision as precisions
from kinject.io import write_parquet
from kinject.settings import load_config
from kinject.training import blocks, checkpoints, finetune, launch
from kinject.training.models import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"The ferry {i} of the Orrin line sails at {6 + i % 12} o'clock from pier {i % 7} to Velmar." for i in range(96)]
BF16_STEP = 2 ** -7  # relative spacing of bf16 numbers
SAVED = {"bf16": "BF16", "fp32": "F32"}  # a resolved precision -> the dtype safetensors names
RUNS = {}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A demo-style tiny Llama, its training data, and rule finetune's settings from the demo config."""
    tmp = tmp_path_factory.mktemp("fsdp")
    build_tiny_model(TEXTS, tmp / "base", vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=64, max_position_embeddings=128, seed=0)
    write_parquet(tmp / "train.parquet", pd.DataFrame({"text": TEXTS}))
    write_parquet(tmp / "validation.parquet", pd.DataFrame({"text": [t.replace("sails", "leaves") for t in TEXTS]}))
    config = load_config(ROOT / "config" / "demo.yaml")
    config["finetune"].update(block_size=32, batch_size=8, per_device_batch_size=4, lr=3e-3, epochs=3,
                              gradient_checkpointing=True, search={"lr": [3e-3], "max_epochs": 2},
                              accelerate_config=str(ROOT / "profiles" / "local" / "accelerate_cpu.yaml"))
    config["finetune"]["lora"].update(r=4, alpha=8, dropout=0.0, lr=3e-2)  # no dropout: both layouts draw alike
    return tmp, config


def command(job, processes: int, name: str, rule="finetune", method="full") -> tuple[list[str], Path]:
    tmp, config = job
    out = tmp / name
    files = {"base": str(tmp / "base"), "train": str(tmp / "train.parquet")}
    if rule == "finetune":
        files.update(out=str(out / "checkpoint"), loss_csv=str(out / "loss.csv"))
    else:
        files.update(validation=str(tmp / "validation.parquet"), out=str(out / "trial.json"), lr="0.003",
                     models=str(out / "models"))
    files["work_dir"] = str(out / "work")
    resources = {**launch.job_resources(config, rule), "processes": processes}
    settings = launch.resolved(launch.rule_settings(config, rule, method=method), "cpu")
    return launch.launch_command(settings, rule, files, resources, 2), out


def here() -> str:
    """What the demo's precision (auto) resolves to on this host's CPU."""
    return precisions.resolve("auto", "cpu").name


def env():
    return {**os.environ, "PYTHONPATH": str(Path(finetune.__file__).parents[1]), "HF_HUB_OFFLINE": "1"}


def run(job, processes: int) -> tuple[pd.DataFrame, str, Path]:
    """The fine-tuning job on `processes` CPU processes, once per module: (loss rows, log, output dir)."""
    if processes not in RUNS:
        argv, out = command(job, processes, f"p{processes}")
        done = run_tree(argv, env=env(), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        RUNS[processes] = pd.read_csv(out / "loss.csv"), done.stderr, out
    return RUNS[processes]


def workers(launcher: subprocess.Popen) -> list[psutil.Process]:
    """The launcher's descendants that are Python processes (torch's workers), none where it has ended."""
    try:
        children = psutil.Process(launcher.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    listed = []
    for child in children:
        try:
            if "python" in Path(child.exe()).name:
                listed.append(child)
        except psutil.NoSuchProcess:
            pass
    return listed


def test_the_shipped_cpu_config_is_fsdp2_full_shard():
    launch = yaml.safe_load((ROOT / "profiles" / "local" / "accelerate_cpu.yaml").read_text())
    paper = yaml.safe_load((ROOT / "profiles" / "slurm" / "accelerate_fsdp.yaml").read_text())
    assert launch["distributed_type"] == paper["distributed_type"] == "FSDP"
    assert launch["fsdp_config"] == paper["fsdp_config"]  # the same sharding the GPU cluster uses
    assert paper["fsdp_config"]["fsdp_version"] == 2 and paper["fsdp_config"]["fsdp_reshard_after_forward"] is True
    assert paper["fsdp_config"]["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"


@pytest.mark.slow  # accelerate launches (minutes): the slow tier
def test_two_cpu_processes_under_fsdp_follow_the_one_process_loss_curve(job):
    one, log_one, _ = run(job, 1)
    two, log_two, out = run(job, 2)
    assert "FSDP2 on CPU: 2 gloo process(es), parameters sharded" in log_two
    assert "FSDP2 on CPU: 1 gloo process(es)" in log_one
    assert f"2 process(es), 1 torch thread(s) each, precision {here()} (auto) on cpu" in log_two  # 2 CPUs, shared
    n_blocks = len(blocks.tokenize_blocks(blocks.load_tokenizer(job[0] / "base"), TEXTS, 32))
    assert two["step"].tolist() == one["step"].tolist() == list(range(1, 3 * math.ceil(n_blocks / 8) + 1))
    assert two["loss"].iloc[-1] < two["loss"].iloc[0] - 1.0
    rel = ((two["loss"] - one["loss"]).abs() / one["loss"]).max()
    assert rel <= BF16_STEP, f"largest relative difference {rel:.4f} exceeds one bf16 step {BF16_STEP:.4f}"
    shards = sorted(p.name for p in (out / "work").glob("**/*.distcp"))
    assert shards == []  # sharded checkpoints are cleared once the model is saved
    assert "resuming from" not in log_two


@pytest.mark.slow  # accelerate launches (minutes): the slow tier
def test_the_sharded_run_saves_one_whole_model_in_the_resolved_dtype(job):
    """The 2-process run's checkpoint is the gathered model in save_dtype (the precision the job resolved: bf16 or
    fp32 safetensors), not its shards, and holds the weights the 1-process run trained, within a few bf16 steps
    of rounding; its training.json says which precision made it."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    (_, _, one), (_, _, two) = run(job, 1), run(job, 2)
    files = sorted(p.name for p in (two / "checkpoint").glob("*.safetensors"))
    assert files == ["model.safetensors"]
    with safe_open(two / "checkpoint" / "model.safetensors", "pt") as fh:
        assert {fh.get_slice(name).get_dtype() for name in fh.keys()} == {SAVED[here()]}
    made = json.loads((two / "checkpoint" / checkpoints.TRAINING_FILE).read_text())
    assert (made["precision"], made["precision_requested"], made["save_dtype"]) == (here(), "auto", here())
    models = [AutoModelForCausalLM.from_pretrained(d / "checkpoint", dtype=torch.float32) for d in (one, two)]
    base = AutoModelForCausalLM.from_pretrained(job[0] / "base", dtype=torch.float32)
    for (name, a), (_, b), (_, start) in zip(*(m.state_dict().items() for m in (*models, base)), strict=True):
        assert a.shape == b.shape, name
        moved = (a - start).abs().max()
        # the learning rate stays constant after warm-up (the validated model is the evaluated one), so a bf16
        # rounding difference between the runs is carried by full-size steps to the end; a model not gathered
        # or not trained differs from the trained one by about `moved`, far beyond this bound
        assert (a - b).abs().max() <= max(0.2 * moved, 8 * BF16_STEP * a.abs().max()), name


@pytest.mark.slow  # accelerate launches (minutes): the slow tier
def test_a_killed_sharded_run_resumes_and_reaches_the_same_loss(job):
    whole, _, _ = run(job, 2)
    argv, out = command(job, 2, "killed")
    started = popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "work").glob("checkpoint-*/trainer_state.json")):  # epoch 1's checkpoint is complete
            assert started.poll() is None and time.monotonic() < deadline, "the job ended before its first checkpoint"
            time.sleep(0.02)
        # mid-epoch 2, every process of the job at once, as SLURM ends a job (torchrun puts its workers in
        # sessions of their own, so killing the launcher's process group would leave them running). The tree is
        # listed until it holds accelerate launch (torchrun's agent runs in it) and 2 workers: a look at one
        # instant may catch a short-lived helper process, or a worker not yet listed
        deadline = time.monotonic() + 30
        while len(job_processes := [started, *workers(started)]) != 3:
            assert started.poll() is None and time.monotonic() < deadline, \
                f"not 1 launcher and 2 workers within 30 s: {[p.pid for p in job_processes]}"
            time.sleep(0.02)
        for process in job_processes:
            process.send_signal(signal.SIGKILL)
        started.wait()
        psutil.wait_procs(job_processes[1:], timeout=30)
    finally:
        kill_tree(started)  # a failed assertion above leaves no worker training on
    checkpoint = max((p.parent for p in (out / "work").glob("checkpoint-*/trainer_state.json")),
                     key=lambda p: int(p.name.split("-")[1]))
    assert sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")) == \
        ["__0_0.distcp", "__1_0.distcp"]  # one model shard per process
    assert not (out / "checkpoint").exists() and not (out / "loss.csv").exists()

    rerun = run_tree(argv, env=env(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {checkpoint}" in rerun.stderr
    resumed = pd.read_csv(out / "loss.csv")
    assert resumed["step"].tolist() == whole["step"].tolist()
    assert resumed["loss"].iloc[-1] == pytest.approx(whole["loss"].iloc[-1], rel=BF16_STEP)


@pytest.mark.slow  # accelerate launches (minutes): the slow tier
def test_a_search_trial_runs_sharded_on_two_processes(job):
    argv, out = command(job, 2, "trial", rule="hparam_trial")
    assert argv[argv.index("-m", 3) + 1] == "kinject.training.hparams" and "--max-epochs" in argv
    done = run_tree(argv, env=env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FSDP2 on CPU: 2 gloo process(es)" in done.stderr
    trial = json.loads((out / "trial.json").read_text())
    assert trial["lr"] == 0.003 and len(trial["val_loss_per_epoch"]) == 2
    assert trial["val_loss_per_epoch"][1] < trial["val_loss_per_epoch"][0]
    # the trial keeps its best epoch's model (the chosen trial's becomes paraphrase set 0's checkpoint), one
    # whole model, not the processes' shards
    assert list((out / "models").rglob("*.safetensors")) and not list(out.rglob("*.distcp"))


@pytest.mark.slow  # accelerate launches (minutes): the slow tier
def test_lora_under_fsdp_on_two_processes_follows_one_process_and_saves_the_whole_adapter(job):
    """LoRA under the same FSDP2 launch: the frozen weights sharded with the adapter's, the loss curve of one
    process, and the adapter gathered whole (its lora_A / lora_B weights only, in save_dtype)."""
    from safetensors import safe_open

    runs = {}
    for processes in (1, 2):
        argv, out = command(job, processes, f"lora{processes}", method="lora")
        done = run_tree(argv, env=env(), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[processes] = pd.read_csv(out / "loss.csv"), done.stderr, out
    (one, _, out_one), (two, log_two, out_two) = runs[1], runs[2]
    assert "FSDP2 on CPU: 2 gloo process(es), parameters sharded" in log_two and "LoRA r=4 alpha=8" in log_two
    assert two["step"].tolist() == one["step"].tolist()
    assert two["loss"].iloc[-1] < two["loss"].iloc[0] - 0.05  # it trains (a rank-4 adapter on an untrained model: slowly)
    # two bf16 steps, not one as for full fine-tuning: the adapter at lr 3e-2 carries a step's rounding into the
    # next; seen 1.18% (1.5 steps) under one shuffled order of the suite (seed 698814), under 1 step alone
    rel = ((two["loss"] - one["loss"]).abs() / one["loss"]).max()
    assert rel <= 2 * BF16_STEP, f"largest relative difference {rel:.4f} exceeds two bf16 steps {2 * BF16_STEP:.4f}"
    tensors = []
    for out in (out_one, out_two):
        with safe_open(out / "checkpoint" / "adapter_model.safetensors", "pt") as fh:
            assert all("lora_A" in n or "lora_B" in n for n in fh.keys())
            assert {fh.get_slice(n).get_dtype() for n in fh.keys()} == {SAVED[here()]}
            tensors.append({n: fh.get_tensor(n).float() for n in fh.keys()})
    assert tensors[0].keys() == tensors[1].keys() and len(tensors[0]) == 2 * 7 * 2  # A, B x 7 linears x 2 layers
    for name, a in tensors[0].items():
        assert a.shape == tensors[1][name].shape, name
