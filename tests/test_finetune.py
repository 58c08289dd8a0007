"""Unsupervised fine-tuning: block packing, the Trainer run, per-step loss, resumption, the CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

from kinject import finetune
from kinject.errors import KinjectError
from kinject.finetune import gradient_accumulation, pack_blocks, train_causal_lm
from kinject.io import write_parquet
from kinject.models import build_tiny_model

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
    assert finetune.training_texts(tmp_path / "k0.parquet") == ["one", "two"]
    write_parquet(tmp_path / "bad.parquet", pd.DataFrame({"body": ["one"]}))
    with pytest.raises(KinjectError, match=r"bad\.parquet: missing column\(s\) text"):
        finetune.training_texts(tmp_path / "bad.parquet")


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
    return len(finetune.tokenize_blocks(AutoTokenizer.from_pretrained(base), texts, block_size))


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
    assert losses["learning_rate"].iloc[0] == pytest.approx(3e-3) and losses["learning_rate"].is_monotonic_decreasing
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


def test_checkpoints_of_other_settings_or_half_written_are_not_resumed(tmp_path):
    run = {"lr": 1e-5}
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert finetune.resume_checkpoint(tmp_path, run, main_process=True) is None  # no run.json: not ours
    assert not list(tmp_path.glob("checkpoint-*"))
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert finetune.resume_checkpoint(tmp_path, run, main_process=True) == str(tmp_path / "checkpoint-4")
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert finetune.resume_checkpoint(tmp_path, {"lr": 2e-5}, main_process=True) is None
    assert not list(tmp_path.glob("checkpoint-*"))


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


def test_accelerate_launch_runs_the_module(base, tmp_path):
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"text": TEXTS}))
    env = {**os.environ, "PYTHONPATH": str(Path(finetune.__file__).parents[1])}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "kinject.finetune"]
    args = ["--base", str(base), "--train", str(tmp_path / "k0.parquet"), "--out", str(tmp_path / "ft"),
            "--loss-csv", str(tmp_path / "loss.csv"), "--lr", "1e-3", "--epochs", "1", "--batch-size", "8",
            "--per-device-batch-size", "4", "--block-size", "32", "--seed", "1", "--work-dir", str(tmp_path / "w")]
    done = subprocess.run(launch + args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "loss.csv")) == math.ceil(n_blocks(base, TEXTS, 32) / 8)
    AutoModelForCausalLM.from_pretrained(tmp_path / "ft")
