"""Unsupervised fine-tuning: block packing, the Trainer run, per-step loss, resumption, the CLI."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

from kinject import precision as precisions
from kinject.errors import KinjectError
from kinject.io import write_parquet
from kinject.settings import load_config
from kinject.training import blocks, callbacks, checkpoints, finetune, launch
from kinject.training.blocks import gradient_accumulation, pack_blocks
from kinject.training.finetune import train_causal_lm
from kinject.training.launch import rule_settings
from kinject.training.models import build_tiny_model

pytestmark = pytest.mark.usefixtures("hf_offline")

BOS, EOS = 1, 2
TEXTS = [f"The lighthouse of Orrin {i} burns {['blue', 'green', 'red'][i % 3]} oil since {1400 + 7 * i}."
         for i in range(24)]
TRAINING_STEP = Trainer.training_step
TRAIN = dict(block_size=32, lr=3e-3, epochs=3, batch_size=8, per_device_batch_size=4, seed=5)


def test_pack_blocks_wraps_each_doc_in_bos_eos_and_cuts_exact_blocks():
    blocks = pack_blocks([[10, 11, 12], [20, 21], [30, 31, 32, 33]], 4, BOS, EOS)
    # stream 1 10 11 12 2 1 20 21 2 1 30 31 | 32 33 2: 15 tokens, 3 blocks, the 3-token tail dropped
    assert blocks == [[BOS, 10, 11, 12], [EOS, BOS, 20, 21], [EOS, BOS, 30, 31]]


def test_pack_blocks_conserves_tokens_and_drops_only_the_tail():
    docs = [list(range(100 + 10 * d, 100 + 10 * d + n)) for d, n in enumerate([5, 9, 1, 7, 3])]
    stream = [t for d in docs for t in [BOS, *d, EOS]]
    for size in (1, 3, 4, 8, 13, len(stream)):
        blocks = pack_blocks(docs, size, BOS, EOS)
        assert all(len(b) == size for b in blocks)
        assert len(blocks) == len(stream) // size
        assert [t for b in blocks for t in b] == stream[:len(blocks) * size]


def test_pack_blocks_does_not_double_special_tokens_the_tokenizer_added():
    assert pack_blocks([[BOS, 7, 8], [BOS, 9, EOS]], 8, BOS, EOS) == [[BOS, 7, 8, EOS, BOS, 9, EOS]]
    assert pack_blocks([[]], 8, BOS, EOS) == [[BOS, EOS]]
    assert pack_blocks([[BOS]], 8, BOS, EOS) == [[BOS, EOS]]


def test_pack_blocks_keeps_a_short_remainder_only_when_it_is_the_only_block():
    assert pack_blocks([[5, 6]], 256, BOS, EOS) == [[BOS, 5, 6, EOS]]
    assert pack_blocks([[5, 6, 7]], 3, BOS, EOS) == [[BOS, 5, 6]]  # the tail [7, EOS] is dropped


def test_pack_blocks_rejects_empty_input_and_bad_block_size():
    with pytest.raises(ValueError, match="no documents"):
        pack_blocks([], 8, BOS, EOS)
    with pytest.raises(ValueError, match="block_size"):
        pack_blocks([[5]], 0, BOS, EOS)


@pytest.mark.parametrize("batch, per_device, world, expected", [
    (64, 8, 1, 8), (64, 4, 4, 4), (64, 16, 4, 1), (64, 128, 1, 1), (16, 16, 1, 1), (64, 6, 1, 10)])
def test_gradient_accumulation(batch, per_device, world, expected):
    assert gradient_accumulation(batch, per_device, world) == expected


def test_training_texts_reads_the_text_column(tmp_path):
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"chunk_id": ["a", "b"], "text": ["one", "two"]}))
    assert blocks.training_texts(tmp_path / "k0.parquet") == ["one", "two"]
    write_parquet(tmp_path / "bad.parquet", pd.DataFrame({"body": ["one"]}))
    with pytest.raises(KinjectError, match=r"bad\.parquet: missing column\(s\) text"):
        blocks.training_texts(tmp_path / "bad.parquet")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Llama whose tokenizer has no pad token (like Llama-2's)."""
    out = tmp_path_factory.mktemp("models") / "base"
    build_tiny_model(TEXTS, out, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=64, max_position_embeddings=128, seed=0)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config.pop("pad_token")
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config))
    assert AutoTokenizer.from_pretrained(out).pad_token is None
    return out


def n_blocks(base, texts, block_size):
    return len(blocks.tokenize_blocks(AutoTokenizer.from_pretrained(base), texts, block_size))


def test_train_writes_per_step_loss_and_a_loadable_model(base, tmp_path):
    texts = TEXTS * 2
    before = finetune.eval_loss(base, texts, block_size=32)
    summary = train_causal_lm(base, texts, tmp_path / "ft", tmp_path / "loss.csv", work_dir=tmp_path / "work", **TRAIN)
    blocks = n_blocks(base, texts, 32)
    steps_per_epoch = math.ceil(math.ceil(blocks / 4) / 2)  # micro-batches of 4, 2 per optimizer step
    losses = pd.read_csv(tmp_path / "loss.csv")
    assert list(losses.columns) == ["step", "epoch", "loss", "learning_rate"]
    assert losses["step"].tolist() == list(range(1, 3 * steps_per_epoch + 1))
    assert summary["steps"] == 3 * steps_per_epoch and summary["blocks"] == blocks
    assert summary["tokens"] == 32 * blocks
    assert 0 < losses["epoch"].iloc[0] < 1 and losses["epoch"].iloc[-1] == pytest.approx(3.0)
    assert sorted(losses["epoch"].apply(math.ceil).unique()) == [1, 2, 3]
    assert losses["loss"].iloc[-1] < losses["loss"].iloc[0] - 0.5
    assert summary["final_loss"] == pytest.approx(losses["loss"].iloc[-1])
    # constant (no warm-up asked): the first e epochs of a run do not depend on how many follow
    assert losses["learning_rate"].tolist() == pytest.approx([3e-3] * len(losses))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ft")
    tok = AutoTokenizer.from_pretrained(tmp_path / "ft")
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.eos_token_id
    after = finetune.eval_loss(tmp_path / "ft", texts, block_size=32)
    assert after < before - 0.5
    assert not any((tmp_path / "work").iterdir())  # checkpoints are cleared once the model is saved


def test_eval_loss_per_epoch_for_the_search(base, tmp_path):
    summary = train_causal_lm(base, TEXTS[:12], tmp_path / "ft", tmp_path / "loss.csv", work_dir=tmp_path / "w",
                              eval_texts=TEXTS[12:], **{**TRAIN, "epochs": 2})
    assert len(summary["eval_loss_per_epoch"]) == 2
    assert summary["eval_loss_per_epoch"][-1] == pytest.approx(
        finetune.eval_loss(tmp_path / "ft", TEXTS[12:], block_size=32), rel=1e-4)


def run_spied(monkeypatch, kill_at=None):
    """Record the global step at every micro-batch; raise (a killed job) when it reaches ``kill_at``."""
    seen = []

    def spy(self, *args, **kwargs):
        seen.append(self.state.global_step)
        if self.state.global_step == kill_at:
            raise RuntimeError("killed")
        return TRAINING_STEP(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", spy)
    return seen


@pytest.mark.slow  # whole trainings, killed and resumed or launched (minutes)
def test_a_killed_run_resumes_from_its_last_checkpoint(base, tmp_path, monkeypatch):
    texts = TEXTS * 2
    whole = train_causal_lm(base, texts, tmp_path / "whole", tmp_path / "whole.csv", work_dir=tmp_path / "w1",
                            save_steps=2, **TRAIN)
    assert whole["steps"] > 6
    run_spied(monkeypatch, kill_at=5)
    args = (base, texts, tmp_path / "ft", tmp_path / "loss.csv")
    with pytest.raises(RuntimeError, match="killed"):
        train_causal_lm(*args, work_dir=tmp_path / "w2", save_steps=2, **TRAIN)
    assert not (tmp_path / "ft").exists() and not (tmp_path / "loss.csv").exists()
    assert [p.name for p in (tmp_path / "w2").glob("checkpoint-*")] == ["checkpoint-4"]
    seen = run_spied(monkeypatch)
    resumed = train_causal_lm(*args, work_dir=tmp_path / "w2", save_steps=2, **TRAIN)
    assert seen[0] == 4  # continues after step 4, does not restart at 0
    assert resumed["steps"] == whole["steps"]
    a, b = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "loss.csv")
    assert b["step"].tolist() == a["step"].tolist()
    assert b["loss"].tolist() == pytest.approx(a["loss"].tolist(), rel=1e-4)


def fake_checkpoint(path, *, state=True):
    """A checkpoint folder with whole (tiny) weights, and a trainer_state.json unless ``state`` is False."""
    from safetensors.torch import save_file

    path.mkdir()
    save_file({"w": torch.zeros(4, 4)}, path / "model.safetensors")
    if state:
        (path / "trainer_state.json").write_text("{}")


def test_checkpoints_of_other_settings_or_half_written_are_not_resumed(tmp_path):
    run = {"lr": 1e-5}
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path / f"checkpoint-{step}", state=step != 6)
    assert checkpoints.resume_checkpoint(tmp_path, run, main_process=True) is None  # no run.json: not ours
    assert not list(tmp_path.glob("checkpoint-*"))
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path / f"checkpoint-{step}", state=step != 6)
    assert checkpoints.resume_checkpoint(tmp_path, run, main_process=True) == str(tmp_path / "checkpoint-4")
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoints.resume_checkpoint(tmp_path, {"lr": 2e-5}, main_process=True) is None
    assert not list(tmp_path.glob("checkpoint-*"))


def test_a_checkpoint_with_truncated_or_missing_weights_is_not_whole(tmp_path):
    import torch.distributed.checkpoint as dcp

    fake_checkpoint(tmp_path / "c")
    assert checkpoints.checkpoint_problem(tmp_path / "c") is None
    weights = tmp_path / "c" / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:-10])
    assert checkpoints.checkpoint_problem(tmp_path / "c") == (
        f"model.safetensors is {len(whole) - 10} bytes but its header describes {len(whole)}")
    weights.write_bytes(whole[:20])
    assert checkpoints.checkpoint_problem(tmp_path / "c") == "model.safetensors is truncated (20 bytes, its header cut)"
    weights.write_bytes(whole)
    (tmp_path / "c" / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"w": "model.safetensors", "v": "model-00002-of-00002.safetensors"}}))
    assert checkpoints.checkpoint_problem(tmp_path / "c") == (
        "model-00002-of-00002.safetensors is missing (1 of the 2 shards model.safetensors.index.json lists)")
    (tmp_path / "c" / "model.safetensors.index.json").unlink()
    (tmp_path / "c" / "optimizer.pt").write_bytes(b"PK\x03\x04 cut")
    assert checkpoints.checkpoint_problem(tmp_path / "c") == "optimizer.pt is truncated (not a readable torch.save file)"
    (tmp_path / "c" / "trainer_state.json").write_text('{"global_step": ')
    assert checkpoints.checkpoint_problem(tmp_path / "c") == "trainer_state.json is not readable JSON"

    sharded = tmp_path / "s"  # FSDP's sharded state dict: a torch distributed checkpoint folder
    dcp.save({"w": torch.zeros(1000)}, checkpoint_id=sharded / "pytorch_model_fsdp_0", no_dist=True)
    (sharded / "trainer_state.json").write_text("{}")
    assert checkpoints.checkpoint_problem(sharded) is None
    (shard,) = (sharded / "pytorch_model_fsdp_0").glob("*.distcp")
    shard.write_bytes(shard.read_bytes()[:100])
    assert checkpoints.checkpoint_problem(sharded).startswith(f"pytorch_model_fsdp_0/{shard.name} is truncated (100 bytes")
    shard.unlink()
    assert checkpoints.checkpoint_problem(sharded) == f"pytorch_model_fsdp_0/{shard.name} is missing"
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "trainer_state.json").write_text("{}")
    assert checkpoints.checkpoint_problem(tmp_path / "e").startswith("no weights")


def test_a_malformed_run_file_discards_the_checkpoints_with_a_warning(tmp_path, caplog):
    fake_checkpoint(tmp_path / "checkpoint-2")
    (tmp_path / checkpoints.RUN_FILE).write_text('{"lr": 1e-')  # cut short, as a full disk or a lost node leaves it
    with caplog.at_level(logging.WARNING, logger="kinject.training.finetune"):
        assert checkpoints.resume_checkpoint(tmp_path, {"lr": 1e-5}, main_process=True) is None
    assert f"{tmp_path / checkpoints.RUN_FILE}: not readable JSON" in caplog.text
    assert not (tmp_path / "checkpoint-2").exists()
    assert json.loads((tmp_path / checkpoints.RUN_FILE).read_text()) == {"lr": 1e-5}  # rewritten for this run


@pytest.mark.slow  # two short trainings
def test_a_truncated_checkpoint_is_removed_and_the_rerun_completes(base, tmp_path, monkeypatch, caplog):
    """A checkpoint whose trainer_state.json exists but whose weights were cut (a node lost before the page cache
    reached the disk) crashed every rerun; it is now removed with a warning naming it, and training starts afresh."""
    texts = TEXTS * 2
    run_spied(monkeypatch, kill_at=5)
    args = (base, texts, tmp_path / "ft", tmp_path / "loss.csv")
    with pytest.raises(RuntimeError, match="killed"):
        train_causal_lm(*args, work_dir=tmp_path / "w", save_steps=2, **TRAIN)
    checkpoint = tmp_path / "w" / "checkpoint-4"
    weights = checkpoint / "model.safetensors"
    assert (checkpoint / "trainer_state.json").exists()
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    seen = run_spied(monkeypatch)
    with caplog.at_level(logging.INFO, logger="kinject.training.finetune"):
        resumed = train_causal_lm(*args, work_dir=tmp_path / "w", save_steps=2, **TRAIN)
    assert f"removing incomplete checkpoint {checkpoint}: model.safetensors is" in caplog.text
    assert "resuming from" not in caplog.text and seen[0] == 0
    assert resumed["steps"] == len(pd.read_csv(tmp_path / "loss.csv")) and (tmp_path / "ft" / "config.json").exists()


def test_cli_takes_lr_and_epochs_from_the_chosen_hparams(base, tmp_path):
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"text": TEXTS}))
    (tmp_path / "chosen.json").write_text(json.dumps({"lr": 1e-3, "epochs": 2, "val_loss": 3.0}))
    finetune.main(["--base", str(base), "--train", str(tmp_path / "k0.parquet"), "--out", str(tmp_path / "ft"),
                   "--loss-csv", str(tmp_path / "loss.csv"), "--lr", "1", "--epochs", "9",
                   "--hparams", str(tmp_path / "chosen.json"), "--batch-size", "8", "--per-device-batch-size", "8",
                   "--block-size", "32", "--work-dir", str(tmp_path / "w")])
    losses = pd.read_csv(tmp_path / "loss.csv")
    assert losses["epoch"].iloc[-1] == pytest.approx(2.0) and losses["learning_rate"].iloc[0] == pytest.approx(1e-3)


def test_cli_bad_input_is_one_line_error(base, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--base", str(base), "--train", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o"),
                       "--loss-csv", str(tmp_path / "l.csv"), "--lr", "1e-3", "--epochs", "1",
                       "--work-dir", str(tmp_path / "w")])
    assert exit_info.value.code == 1
    assert "missing.parquet: file not found" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[1]


def launch_env():
    return {**os.environ, "PYTHONPATH": str(Path(finetune.__file__).parents[1]), "HF_HUB_OFFLINE": "1"}


def demo_settings(**finetune_values):
    """rule finetune's settings for the demo config (its accelerate config file), with tiny training values."""
    config = load_config(ROOT / "config" / "demo.yaml")
    config["finetune"].update(accelerate_config=str(ROOT / "profiles" / "local" / "accelerate_cpu.yaml"),
                              **finetune_values)
    return rule_settings(config, "finetune")


def safetensors_dtypes(model_dir):
    with safe_open(Path(model_dir) / "model.safetensors", "pt") as f:
        return {f.get_slice(name).get_dtype() for name in f.keys()}


@pytest.mark.slow  # whole trainings, killed and resumed or launched (minutes)
def test_the_rules_launch_command_trains_and_saves_bf16_safetensors(base, tmp_path):
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"text": TEXTS}))
    settings = demo_settings(block_size=32, batch_size=8, per_device_batch_size=4, lr=1e-3, epochs=1)
    assert settings["precision"] == settings["save_dtype"] == "auto"  # the demo's: resolved where the job runs
    settings = launch.resolved({**settings, "precision": "bf16"}, "cpu")  # explicit: bf16 on any CPU (tiny model)
    files = {"base": str(base), "train": str(tmp_path / "k0.parquet"), "out": str(tmp_path / "ft"),
             "loss_csv": str(tmp_path / "loss.csv"), "work_dir": str(tmp_path / "w")}
    argv = launch.launch_command(settings, "finetune", files, {"gpu": 0, "cpus_per_task": 2}, 2)
    done = subprocess.run(argv, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 process(es), 2 torch thread(s) each, precision bf16 on cpu" in done.stderr
    assert len(pd.read_csv(tmp_path / "loss.csv")) == math.ceil(n_blocks(base, TEXTS, 32) / 8)
    assert safetensors_dtypes(tmp_path / "ft") == {"BF16"}
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "ft").dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(tmp_path / "ft").pad_token is not None


LAUNCH_DRIVER = """
import json, logging, sys
from kinject.training import launch
from kinject.errors import KinjectError
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
try:
    print(launch.launch("finetune", *json.loads(sys.argv[1]), 1, log_path=sys.argv[2]), flush=True)
except KinjectError as err:
    print(f"kinject error: {err}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.mark.slow  # two launched trainings
def test_a_sigterm_saves_a_checkpoint_and_the_rerun_resumes_from_it(base, tmp_path):
    """SIGTERM (SLURM's time limit, scancel) to the rule's launcher mid-epoch: it is passed to the training
    process, which saves a checkpoint at the end of its step and exits non-zero; the rerun resumes from it."""
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"text": TEXTS * 20}))
    settings = demo_settings(block_size=32, batch_size=8, per_device_batch_size=4, lr=1e-3, epochs=3)
    work = tmp_path / "w"
    files = {"base": str(base), "train": str(tmp_path / "k0.parquet"), "out": str(tmp_path / "ft"),
             "loss_csv": str(tmp_path / "loss.csv"), "work_dir": str(work)}
    log = tmp_path / "job.log"  # as the rule's log: the launcher and the training process write to it
    job = [sys.executable, "-c", LAUNCH_DRIVER, json.dumps([settings, files, {"gpu": 0}]), str(log)]
    env = {**launch_env(), "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        run = subprocess.Popen(job, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while "'loss'" not in log.read_text():  # the Trainer prints each step's logs: the first step is done
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=120) != 0
    text = log.read_text()
    assert "SIGTERM: passed to 1 training process(es)" in text, text[-3000:]
    (checkpoint,) = work.glob("checkpoint-*")
    assert checkpoints.checkpoint_problem(checkpoint) is None
    step = int(checkpoint.name.rsplit("-", 1)[1])
    assert text.strip().splitlines()[-1] == (f"kinject error: {log}: finetune exited with "
                                             f"status 1: {checkpoint}: saved after SIGTERM at step {step}; a rerun "
                                             "resumes from it")
    assert not (tmp_path / "ft").exists() and not (tmp_path / "loss.csv").exists()

    with open(log, "w") as out:
        assert subprocess.run(job, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode == 0, \
            log.read_text()[-3000:]
    assert f"resuming from {checkpoint}" in log.read_text()
    steps = pd.read_csv(tmp_path / "loss.csv")["step"].tolist()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > step
    assert (tmp_path / "ft" / "model.safetensors").exists() and not list(work.glob("checkpoint-*"))


@pytest.mark.slow  # two short trainings
def test_a_sigterm_in_an_epochs_last_step_saves_after_the_epochs_evaluation(base, tmp_path, monkeypatch):
    """A checkpoint at an epoch's last step but before its end would resume past the epoch's evaluation and
    lose it (a search trial's loss for that epoch): the stop waits for the epoch's end."""
    texts, held_out, handler = TEXTS[:12] * 2, TEXTS[12:], signal.getsignal(signal.SIGTERM)
    per_epoch = math.ceil(math.ceil(n_blocks(base, texts, 32) / 4) / 2)
    seen = []

    def sigterm_in_last_step(self, *args, **kwargs):
        seen.append(self.state.global_step)
        if self.state.global_step == per_epoch - 1:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM's time limit sends every process of the job
        return TRAINING_STEP(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", sigterm_in_last_step)
    args = (base, texts, tmp_path / "ft", tmp_path / "loss.csv")
    train = dict(work_dir=tmp_path / "w", eval_texts=held_out, **{**TRAIN, "epochs": 2})
    with pytest.raises(callbacks.Interrupted, match=rf"checkpoint-{per_epoch}: saved after SIGTERM at step {per_epoch}"):
        train_causal_lm(*args, **train)
    state = json.loads((tmp_path / "w" / f"checkpoint-{per_epoch}" / "trainer_state.json").read_text())
    assert [e["epoch"] for e in state["log_history"] if "eval_loss" in e] == [1.0]
    assert signal.getsignal(signal.SIGTERM) is handler  # the training's handler was its own only
    monkeypatch.setattr(Trainer, "training_step", TRAINING_STEP)
    resumed = train_causal_lm(*args, **train)
    assert len(resumed["eval_loss_per_epoch"]) == 2 and resumed["steps"] == 2 * per_epoch


def test_bf16_autocasts_on_cpu_and_fp32_does_not(base, tmp_path, monkeypatch):
    from transformers.models.llama import modeling_llama

    seen = []
    mlp_forward = modeling_llama.LlamaMLP.forward

    def spy(self, x):  # inside the model's forward: where accelerate's autocast applies
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return mlp_forward(self, x)

    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", spy)
    small = {**TRAIN, "epochs": 1}
    train_causal_lm(base, TEXTS, tmp_path / "bf16", tmp_path / "a.csv", work_dir=tmp_path / "a", precision="bf16",
                    save_dtype="bf16", **small)
    assert seen and set(seen) == {torch.bfloat16}
    assert safetensors_dtypes(tmp_path / "bf16") == {"BF16"}
    seen.clear()
    train_causal_lm(base, TEXTS, tmp_path / "fp32", tmp_path / "b.csv", work_dir=tmp_path / "b", **small)
    assert seen and set(seen) == {False}
    assert safetensors_dtypes(tmp_path / "fp32") == {"F32"}


def test_gradient_checkpointing_recomputes_and_trains_the_same_model(base, tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling

    small = {**TRAIN, "epochs": 1}
    plain = train_causal_lm(base, TEXTS, tmp_path / "a", tmp_path / "a.csv", work_dir=tmp_path / "wa", **small)
    calls = []
    checkpoint = modeling.checkpoint
    monkeypatch.setattr(modeling, "checkpoint", lambda *args, **kwargs: calls.append(1) or checkpoint(*args, **kwargs))
    recomputed = train_causal_lm(base, TEXTS, tmp_path / "b", tmp_path / "b.csv", work_dir=tmp_path / "wb",
                                 gradient_checkpointing=True, **small)
    assert len(calls) == 2 * math.ceil(n_blocks(base, TEXTS, 32) / 4)  # each of the 2 layers, each micro-batch of 4
    assert recomputed["final_loss"] == pytest.approx(plain["final_loss"], rel=1e-5)


def test_a_gpu_job_without_cuda_stops_before_the_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU host, whatever this one is
    with pytest.raises(SystemExit) as exit_info:  # neither the model nor the data exist: the check comes first
        finetune.main(["--base", str(tmp_path / "no-model"), "--train", str(tmp_path / "no.parquet"),
                       "--out", str(tmp_path / "o"), "--loss-csv", str(tmp_path / "l.csv"), "--lr", "1e-3",
                       "--epochs", "1", "--work-dir", str(tmp_path / "w"), "--gpus", "2"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    # kinject.device.check_gpu's line, as every GPU rule's job writes it
    assert len(err) == 1 and err[0].startswith("kinject error: resources: the job asked for 2 GPU(s) but CUDA is not "
                                               "available (CUDA_VISIBLE_DEVICES=")
    assert err[0].endswith("set resources.allow_cpu: true to run GPU rules on the CPU")
    with pytest.raises(KinjectError, match="CUDA is not available"):  # the rule's job: before anything launches
        launch.launch("finetune", demo_settings(), {"out": str(tmp_path / "o")}, {"gpu": 1}, 1)
    assert finetune.check_device("fp32", gpus=2, allow_cpu=True) == "cpu"


def test_bf16_on_a_gpu_without_it_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-32GB")
    with pytest.raises(KinjectError) as err:
        finetune.check_device("bf16", gpus=1)
    assert str(err.value) == "precision: bf16 is not supported by Tesla V100-SXM2-32GB; set precision: fp32 (or auto)"
    assert finetune.check_device("fp32", gpus=1) == finetune.check_device("auto", gpus=1) == "cuda"
    assert precisions.resolve("auto", "cuda").name == "fp32"


@pytest.mark.parametrize("cuda", [False, True])
def test_a_job_that_asked_for_no_gpu_trains_on_the_cpu_on_any_host(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # not asked: on the CPU it is fine
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-32GB")
    assert finetune.check_device("bf16", gpus=0) == finetune.check_device("fp32", gpus=0) == "cpu"
    assert finetune.check_device("fp32", gpus=1, allow_cpu=True) == ("cuda" if cuda else "cpu")


def paper_job(rule, task):
    config = load_config(ROOT / "config.yaml")
    resources = launch.job_resources(config, rule)
    return config, rule_settings(config, rule, config["tasks"][task]), resources, resources["cpus_per_task"]


def test_launch_command_of_the_paper_config(monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's paths are relative to the workflow's directory
    monkeypatch.setattr(precisions, "gpu_bf16", lambda: (True, "NVIDIA H100 80GB HBM3"))
    config, settings, resources, threads = paper_job("finetune", "current_events")
    settings = launch.resolved(settings, "cuda")
    files = {"base": "meta-llama/Llama-2-7b-hf", "train": "results/current_events/paraphrases/paraphrases_k3.parquet",
             "hparams": "results/hparams/llama2-7b/current_events/chosen.json",
             "out": "results/finetune/llama2-7b/current_events/k3/checkpoint",
             "loss_csv": "results/finetune/llama2-7b/current_events/k3/train_loss.csv",
             "work_dir": "results/.work/finetune/llama2-7b/current_events/k3"}
    assert launch.launch_command(settings, "finetune", files, resources, threads) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "profiles/slurm/accelerate_fsdp.yaml",
        "--num_processes", "4", "--mixed_precision", "bf16", "-m", "kinject.training.finetune",
        "--base", "meta-llama/Llama-2-7b-hf", "--train", "results/current_events/paraphrases/paraphrases_k3.parquet",
        "--hparams", "results/hparams/llama2-7b/current_events/chosen.json",
        "--out", "results/finetune/llama2-7b/current_events/k3/checkpoint",
        "--loss-csv", "results/finetune/llama2-7b/current_events/k3/train_loss.csv",
        "--work-dir", "results/.work/finetune/llama2-7b/current_events/k3", "--precision", "bf16", "--seed", "1234",
        "--block-size", "256", "--batch-size", "64", "--per-device-batch-size", "4", "--gradient-checkpointing",
        "--save-dtype", "bf16", "--gpus", "4", "--threads", "4"]  # lr and epochs: the search's, in chosen.json
    config, settings, resources, threads = paper_job("hparam_trial", "anatomy")
    settings = launch.resolved(settings, "cuda")
    files = {"base": "mistralai/Mistral-7B-v0.1", "train": "t.parquet", "validation": "v.parquet", "out": "lr.json",
             "models": "lr", "lr": "2e-05", "work_dir": "w"}
    assert launch.launch_command(settings, "hparam_trial", files, resources, threads) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "profiles/slurm/accelerate_fsdp.yaml",
        "--num_processes", "4", "--mixed_precision", "bf16", "-m", "kinject.training.hparams", "--base", "mistralai/Mistral-7B-v0.1", "--train", "t.parquet",
        "--validation", "v.parquet", "--out", "lr.json", "--models", "lr", "--lr", "2e-05", "--work-dir", "w",
        "--precision", "bf16", "--seed", "1234", "--block-size", "256", "--batch-size", "64",
        "--per-device-batch-size", "4", "--gradient-checkpointing", "--save-dtype", "bf16", "--max-epochs", "5",
        "--gpus", "4", "--threads", "4"]


CPUS = {True: (True, "AVX512_BF16"), False: (False, "AVX2, no native bf16")}  # the two kinds of CPU, faked


@pytest.mark.parametrize("native", [True, False])
def test_launch_command_of_the_demo_config(monkeypatch, native):
    """The demo's precision: auto becomes bf16 on a CPU with native bf16 and fp32 on one without, and the launch's
    mixed precision and the checkpoints' dtype follow it (one key): on either kind of host, faked."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(precisions, "cpu_bf16", lambda: CPUS[native])
    config = load_config(ROOT / "config" / "demo.yaml")
    assert config["precision"] == "auto"
    assert "mixed_precision" not in yaml.safe_load((ROOT / config["finetune"]["accelerate_config"]).read_text())
    settings = rule_settings(config, "finetune", config["tasks"]["atlas"])  # no search in the demo: lr and epochs
    with pytest.raises(ValueError, match="settings without mixed_precision"):
        launch.launch_command(settings, "finetune", {}, {}, 1)
    settings = launch.resolved(settings, "cpu")
    files = {"base": "results/models/smollm2-135m/base", "train": "t.parquet", "hparams": None, "out": "ckpt",
             "loss_csv": "loss.csv", "work_dir": "w"}
    resources = launch.job_resources(config, "finetune")
    batch = config["finetune"]["batch_size"]
    assert config["finetune"]["per_device_batch_size"] == batch  # one process, no accumulation
    mixed = "bf16" if native else "no"  # the processes get auto itself, resolve it alike and check they agree
    assert launch.launch_command(settings, "finetune", files, resources, resources["cpus_per_task"]) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "profiles/local/accelerate_cpu.yaml",
        "--num_processes", "1", "--mixed_precision", mixed, "-m", "kinject.training.finetune",
        "--base", "results/models/smollm2-135m/base",
        "--train", "t.parquet", "--out", "ckpt", "--loss-csv", "loss.csv",
        "--work-dir", "w", "--precision", "auto", "--seed", "1234", "--block-size", "256", "--batch-size", str(batch),
        "--per-device-batch-size", str(batch), "--save-dtype", "auto", "--lr", "0.0003", "--epochs", "1",
        "--gpus", "0", "--threads", "2"]
    with pytest.raises(KinjectError) as err:  # a step's blocks cannot split into 2 processes x all of them
        launch.launch_command(settings, "finetune", files, {**resources, "processes": 2}, 2)
    assert str(err.value) == (f"finetune.batch_size: {batch} is not a multiple of per_device_batch_size {batch} x 2 "
                              "processes")
    halves = {**settings, "batch_size": 16, "per_device_batch_size": 8}
    two = launch.launch_command(halves, "finetune", files, {**resources, "processes": 2}, 2)
    assert two[5:9] == ["--num_processes", "2", "--mixed_precision", mixed] and two[-2:] == ["--threads", "1"]  # 2 CPUs shared by 2 processes
    quarters = {**settings, "batch_size": 16, "per_device_batch_size": 4}
    four = launch.launch_command(quarters, "finetune", files, {"gpu": 4, "processes": 2}, 16)
    assert four[5:7] == ["--num_processes", "4"] and four[-4:] == ["--gpus", "4", "--threads", "4"]


def test_rule_params_carry_only_what_the_rule_reads():
    config = load_config(ROOT / "config.yaml")
    trial = rule_settings(config, "hparam_trial")
    searched = rule_settings(config, "finetune", config["tasks"]["anatomy"])
    no_search = {k: v for k, v in config["tasks"]["current_events"].items() if k != "validation"}
    unsearched = rule_settings(config, "finetune", no_search)
    # a trial saves its best epoch's model, which becomes set 0's checkpoint: it reads save_dtype too
    assert set(trial) == {"precision", "accelerate_config", "seed", "block_size", "batch_size",
                          "per_device_batch_size", "gradient_checkpointing", "max_epochs", "save_dtype"}
    assert set(searched) == set(trial) - {"max_epochs"}
    assert set(unsearched) == set(searched) | {"lr", "epochs"}
    config["finetune"]["search"]["lr"].append(1e-4)  # a new trial re-runs no fine-tune and no other trial
    config["finetune"].update(lr=3e-5, epochs=2)  # nor does an lr the search replaces
    assert rule_settings(config, "hparam_trial") == trial
    assert rule_settings(config, "finetune", config["tasks"]["anatomy"]) == searched


def test_a_launch_config_kinject_cannot_use_is_one_line(tmp_path):
    shipped = (ROOT / "profiles" / "local" / "accelerate_cpu.yaml").read_text()
    path = tmp_path / "accelerate.yaml"
    path.write_text("\n".join(line for line in shipped.splitlines() if not line.startswith(("fsdp_config", "  ")))
                    + "\nfsdp_config: {fsdp_activation_checkpointing: true}\n")
    with pytest.raises(KinjectError) as err:
        launch.read_accelerate_config(path)
    assert str(err.value) == f"{path}: fsdp_activation_checkpointing is set: use finetune.gradient_checkpointing instead"
    with pytest.raises(KinjectError, match="missing.yaml: file not found"):
        launch.read_accelerate_config(tmp_path / "missing.yaml")


def test_an_accelerate_file_with_its_own_mixed_precision_is_overridden_and_said_so(tmp_path, monkeypatch, caplog):
    """A user's accelerate file (`accelerate config` writes mixed_precision) cannot contradict `precision`: the
    launch passes --mixed_precision, and the job's log says the file's value was overridden."""
    shipped = (ROOT / "profiles" / "local" / "accelerate_cpu.yaml").read_text()
    path = tmp_path / "accelerate.yaml"
    path.write_text(shipped + "mixed_precision: 'no'\n")
    monkeypatch.setattr(precisions, "cpu_bf16", lambda: CPUS[True])
    settings = {**demo_settings(), "accelerate_config": str(path)}
    with caplog.at_level(logging.WARNING, logger="kinject.training.launch"):
        argv = launch.launch_command(launch.resolved(settings, "cpu"), "finetune", {}, {}, 1)
    assert argv[argv.index("--mixed_precision") + 1] == "bf16"
    assert f"{path}: mixed_precision 'no' is overridden by --mixed_precision 'bf16'" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precisions, "cpu_bf16", lambda: CPUS[False])  # auto: fp32 here, as the file says: no word
    with caplog.at_level(logging.WARNING, logger="kinject.training.launch"):
        argv = launch.launch_command(launch.resolved(settings, "cpu"), "finetune", {}, {}, 1)
    assert argv[argv.index("--mixed_precision") + 1] == "no" and "overridden" not in caplog.text


def test_changing_precision_is_one_key(tmp_path):
    """precision: fp32 (or bf16) over the demo plans every job with no other edit: the accelerate file has no
    second copy to keep in step."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for precision in ("fp32", "bf16"):
        config["precision"] = precision
        (tmp_path / f"{precision}.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / f"{precision}.yaml")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    for shipped in ("profiles/local/accelerate_cpu.yaml", "profiles/slurm/accelerate_fsdp.yaml"):
        assert "mixed_precision" not in yaml.safe_load((ROOT / shipped).read_text())


def test_a_failed_job_is_one_line_and_its_processes_write_to_the_rules_log(base, tmp_path, capfd):
    from types import SimpleNamespace

    from kinject.cli import rule_main

    log = tmp_path / "logs" / "finetune.log"
    files = {"base": str(base), "train": str(tmp_path / "missing.parquet"), "out": str(tmp_path / "ft"),
             "loss_csv": str(tmp_path / "loss.csv"), "work_dir": str(tmp_path / "w")}
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        with pytest.raises(SystemExit) as exit_info:
            job = SimpleNamespace(log=[str(log)], rule="finetune", wildcards={}, threads=1,
                                  resources=SimpleNamespace(items={"gpu": 0}.items, get={"gpu": 0}.get))
            rule_main(job, launch.launch, "finetune", demo_settings(), files, {"gpu": 0}, 1, log_path=str(log))
    finally:  # rule_main logs to the rule's log file from now on: give pytest its handlers back
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
    assert exit_info.value.code == 1
    assert capfd.readouterr().err.strip().splitlines() == [
        f"kinject error: {log}: finetune exited with status 1: {tmp_path / 'missing.parquet'}: file not found"]
    lines = log.read_text().splitlines()
    launching = next(line for line in lines if "launching: " in line)
    assert launching.endswith("--gpus 0 --threads 1")
    assert f"kinject error: {tmp_path / 'missing.parquet'}: file not found" in lines  # the process's own line
    assert lines[-1].endswith(f"finetune exited with status 1: {tmp_path / 'missing.parquet'}: file not found")


def test_a_config_naming_no_precision_or_save_dtype_keeps_the_params_it_had(tmp_path):
    """auto is the demo's choice, not the schema's default: a config without `precision` stays fp32, and one
    without `finetune.save_dtype` gets its precision's dtype written out in the params, as before, so neither
    re-runs a training job once kinject knows auto; under auto the params say auto, for the job to resolve."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    del config["precision"]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(config))
    plain = load_config(tmp_path / "plain.yaml")
    assert plain["precision"] == "fp32" and plain["finetune"]["save_dtype"] == "auto"
    assert {k: rule_settings(plain, "finetune")[k] for k in ("precision", "save_dtype")} == \
        {"precision": "fp32", "save_dtype": "fp32"}
    plain["precision"] = "bf16"
    assert rule_settings(plain, "finetune")["save_dtype"] == "bf16"
    plain["precision"] = "auto"
    assert rule_settings(plain, "finetune")["save_dtype"] == "auto"
