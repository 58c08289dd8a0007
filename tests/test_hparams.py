"""The learning-rate / epochs search on held-out validation paraphrases."""

import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.hparams import choose, run_trial
from kinject.io import write_parquet
from kinject.models import build_tiny_model

TEXTS = [f"The tower of Brumer {i} was raised in {1600 + 3 * i} by the guild of {['masons', 'smiths'][i % 2]}."
         for i in range(20)]
TRAINING = {"block_size": 32, "batch_size": 4, "per_device_batch_size": 4, "seed": 1}


def test_choose_takes_the_lowest_validation_loss_over_lrs_and_epochs(tmp_path):
    paths = []
    for lr, losses in [(1e-5, [3.0, 2.9, 2.95]), (5e-5, [2.8, 2.5, 2.7]), (1e-6, [3.5, 3.4, 3.3])]:
        paths.append(tmp_path / f"lr{lr:g}.json")
        paths[-1].write_text(json.dumps({"lr": lr, "val_loss_per_epoch": losses}))
    assert choose(paths, tmp_path / "chosen.json") == {"lr": 5e-5, "epochs": 2, "val_loss": 2.5}
    assert json.loads((tmp_path / "chosen.json").read_text())["epochs"] == 2


def test_choose_rejects_a_broken_trial(tmp_path):
    bad = tmp_path / "lr1e-05.json"
    bad.write_text("{}")
    with pytest.raises(KinjectError, match="lr1e-05.json: not a hyper-parameter trial"):
        choose([bad], tmp_path / "chosen.json")
    assert not (tmp_path / "chosen.json").exists()


def test_trial_records_validation_loss_per_epoch_and_cleans_up(tmp_path):
    base = tmp_path / "base"
    build_tiny_model(TEXTS, base, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=128, seed=0)
    write_parquet(tmp_path / "train.parquet", pd.DataFrame({"text": TEXTS}))
    write_parquet(tmp_path / "val.parquet", pd.DataFrame({"text": [t.replace("was raised", "went up") for t in TEXTS]}))
    trial = run_trial(base, tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "lr.json", lr=3e-3,
                      max_epochs=2, work_dir=tmp_path / "work", **TRAINING)
    assert len(trial["val_loss_per_epoch"]) == 2 and trial["val_loss_per_epoch"][1] < trial["val_loss_per_epoch"][0]
    assert json.loads((tmp_path / "lr.json").read_text()) == trial
    assert not list((tmp_path / "work").rglob("*.safetensors"))  # the trial's model is never saved
    assert not list((tmp_path / "work" / "checkpoints").iterdir())  # and its checkpoints are cleared
